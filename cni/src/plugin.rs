//! The CNI commands (spec 1.0 ADD, DEL, CHECK, VERSION; spec 1.1 STATUS, GC): what each one
//! asks of podswitchd and of the kernel, and what it prints.

use crate::config::{Command, Env, NetConf, SUPPORTED_VERSIONS};
use crate::daemon;
use crate::error::{
    CniError, DAEMON_REFUSED, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, IO_FAILURE, PLUGIN_NOT_AVAILABLE,
    RESULT_VERSION, UNKNOWN_CONTAINER,
};
use crate::netlink::{self, NetError, Prefix, RouteSpec};
use crate::result::{CniResult, Dns, Interface, IpConfig, Route};
use control::api::pb;
use serde_json::json;
use std::path::Path;

/// Plugin-specific code (100+): CHECK found the attachment different from what it should be.
pub const CHECK_MISMATCH: u32 = 101;

fn io(e: NetError) -> CniError {
    CniError::new(IO_FAILURE, e.msg)
}

/// The VERSION answer: `{"cniVersion":"1.0.0","supportedVersions":[...]}`.
pub fn version_json() -> String {
    json!({ "cniVersion": RESULT_VERSION, "supportedVersions": SUPPORTED_VERSIONS }).to_string()
}

/// Runs one invocation: `env` is the `CNI_*` environment, `stdin` the network configuration
/// (unused by VERSION). Returns what to print on stdout on success (`None`: nothing, as
/// for DEL, CHECK, STATUS and GC), or the error to print.
pub fn run(env: &Env, stdin: &[u8]) -> Result<Option<String>, CniError> {
    let cmd = env.command.as_deref().ok_or_else(|| CniError::new(INVALID_ENV, "CNI_COMMAND is not set"))?;
    let command = Command::parse(cmd)
        .ok_or_else(|| CniError::new(INVALID_ENV, format!("CNI_COMMAND {cmd:?} is not a CNI command")))?;
    if command == Command::Version {
        return Ok(Some(version_json()));
    }
    let conf = NetConf::parse(stdin)?;
    match command {
        Command::Add => add(env, &conf).map(|r| Some(serde_json::to_string(&r).unwrap_or_default())),
        Command::Del => del(env, &conf).map(|()| None),
        Command::Check => check(env, &conf).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        Command::Gc => gc(&conf).map(|()| None),
        Command::Version => Ok(Some(version_json())),
    }
}

fn malformed(what: &str, e: String) -> CniError {
    CniError::new(DAEMON_REFUSED, format!("podswitchd answered a malformed {what}")).with_details(e)
}

/// The addresses and routes of an attachment, parsed.
pub fn attachment_net(att: &pb::CniAttachment) -> Result<(Vec<Prefix>, Vec<RouteSpec>), CniError> {
    let addrs = att.ips.iter().map(|ip| ip.address.parse::<Prefix>()).collect::<Result<Vec<_>, _>>();
    let addrs = addrs.map_err(|e| malformed("address", e))?;
    let mut routes = Vec::with_capacity(att.routes.len());
    for r in &att.routes {
        let dst: Prefix = r.dst.parse().map_err(|e| malformed("route", e))?;
        let gw = match r.gw.as_str() {
            "" => None,
            g => Some(g.parse().map_err(|_| malformed("route", format!("gateway {g:?}")))?),
        };
        routes.push(RouteSpec { dst, gw });
    }
    Ok((addrs, routes))
}

/// The 1.0.0 result for an attachment whose two ends are `host` and `container`.
pub fn build_result(
    att: &pb::CniAttachment,
    host: &netlink::Link,
    container: &netlink::Link,
    netns: &str,
) -> CniResult {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let dns = att
        .dns
        .as_ref()
        .map(|d| Dns {
            nameservers: d.nameservers.clone(),
            domain: d.domain.clone(),
            search: d.search.clone(),
            options: d.options.clone(),
        })
        .unwrap_or_default();
    CniResult {
        cni_version: RESULT_VERSION.to_string(),
        interfaces: vec![
            Interface { name: host.name.clone(), mac: host.mac.clone(), sandbox: String::new() },
            Interface { name: container.name.clone(), mac: container.mac.clone(), sandbox: netns.to_string() },
        ],
        ips: att
            .ips
            .iter()
            .map(|ip| IpConfig { address: ip.address.clone(), gateway: non_empty(&ip.gateway), interface: Some(1) })
            .collect(),
        routes: att.routes.iter().map(|r| Route { dst: r.dst.clone(), gw: non_empty(&r.gw) }).collect(),
        dns,
    }
}

/// Configures both ends for an attachment the daemon gave and builds the result.
fn configure(
    conf: &NetConf,
    netns: &str,
    ifname: &str,
    host: &str,
    att: &pb::CniAttachment,
) -> Result<CniResult, CniError> {
    let (addrs, routes) = attachment_net(att)?;
    let mtu = conf.mtu.or((att.mtu != 0).then_some(att.mtu));
    let h = netlink::configure_host(host, mtu).map_err(io)?;
    let c = netlink::configure_container(Path::new(netns), ifname, &addrs, &routes, mtu).map_err(io)?;
    Ok(build_result(att, &h, &c, netns))
}

/// ADD: checks the environment, looks for an earlier attachment (re-ADD answers from it),
/// creates the pair, registers the port with CniAdd, configures both ends. Any failure after
/// the pair exists undoes it (CniDel, host end deleted).
fn add(env: &Env, conf: &NetConf) -> Result<CniResult, CniError> {
    let cid = env.require_container_id()?;
    let ifname = env.require_ifname()?;
    let netns = env.require_netns()?;
    let args = env.cni_args()?;
    let socket = conf.socket.as_path();
    let host = netlink::host_ifname(cid, ifname);
    let r = daemon::cni_ref(cid, ifname);

    let existing = daemon::cni_check(socket, r.clone()).map_err(|e| e.to_cni("CniCheck"))?;
    let host_link = netlink::link(None, &host).map_err(io)?;
    if let Some(att) = &existing {
        let same = host_link.is_some() && att.host_interface == host && att.netns == netns;
        if same && netlink::link(Some(Path::new(netns)), ifname).map_err(io)?.is_some() {
            return configure(conf, netns, ifname, &host, att);
        }
        // A record without its pair (or for another namespace): start again.
        daemon::cni_del(socket, r.clone()).map_err(|e| e.to_cni("CniDel"))?;
    }
    if host_link.is_some() {
        netlink::delete_host(&host).map_err(io)?;
    }
    netlink::create_pair(&host, Path::new(netns), ifname, conf.queues).map_err(|e| {
        if e.is_exists() {
            CniError::new(IO_FAILURE, format!("cannot create {ifname} in {netns}: the name is taken"))
                .with_details(e.msg)
        } else {
            io(e)
        }
    })?;

    let mut told_daemon = false;
    let out = (|| {
        let peer = netlink::link(Some(Path::new(netns)), ifname)
            .map_err(io)?
            .ok_or_else(|| CniError::new(IO_FAILURE, format!("{ifname} vanished from {netns}")))?;
        let req = pb::CniAddRequest {
            r#ref: Some(r.clone()),
            netns: netns.to_string(),
            host_interface: host.clone(),
            mac: peer.mac,
            pod_namespace: args.get("K8S_POD_NAMESPACE").unwrap_or("").to_string(),
            pod_name: args.get("K8S_POD_NAME").unwrap_or("").to_string(),
            annotations: conf.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        told_daemon = true;
        let att = daemon::cni_add(socket, req).map_err(|e| e.to_cni("CniAdd"))?;
        configure(conf, netns, ifname, &host, &att)
    })();
    if out.is_err() {
        if told_daemon {
            if let Err(e) = daemon::cni_del(socket, r) {
                eprintln!("podswitch-cni: undoing ADD: CniDel: {}", e.to_cni("CniDel"));
            }
        }
        if let Err(e) = netlink::delete_host(&host) {
            eprintln!("podswitch-cni: undoing ADD: {e}");
        }
    }
    out
}

/// DEL: tells the daemon (NOT_FOUND is fine) and deletes the host end if it is still there.
/// Works without CNI_NETNS and without prevResult, any number of times.
///
/// When the daemon cannot be told, the host end is deleted all the same (the pod's traffic
/// stops), but DEL fails with the daemon's error (code 11 when unreachable) so that the
/// runtime calls DEL again: the daemon keeps attachments across restarts, and an attachment
/// it never heard the end of would hold its addresses until a GC.
fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let cid = env.require_container_id()?;
    let ifname = env.require_ifname()?;
    let host = netlink::host_ifname(cid, ifname);
    let told = daemon::cni_del(&conf.socket, daemon::cni_ref(cid, ifname));
    let mut net = netlink::delete_host(&host).map(|_| ());
    if let Ok(Some(att)) = &told {
        if att.host_interface != host && netlink::is_host_ifname(&att.host_interface) {
            net = net.and(netlink::delete_host(&att.host_interface).map(|_| ()));
        }
    }
    match (told, net) {
        (Err(e), Ok(())) => {
            let e = e.to_cni("CniDel");
            let d = format!("{}; host end {host} removed", e.details);
            Err(e.with_details(d))
        }
        (Err(e), Err(n)) => {
            let e = e.to_cni("CniDel");
            let d = format!("{}; removing {host} failed too: {n}", e.details);
            Err(e.with_details(d))
        }
        (Ok(_), Err(n)) => Err(io(n)),
        (Ok(_), Ok(())) => Ok(()),
    }
}

fn mismatch(msg: String) -> CniError {
    CniError::new(CHECK_MISMATCH, msg)
}

/// CHECK (config 0.4.0 or later): the daemon's record (CniCheck; none: code 3), the host end
/// up, the container end in CNI_NETNS with every address of the record and of prevResult.
fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    if !conf.has_check() {
        return Err(CniError::new(INCOMPATIBLE_VERSION, "CHECK needs cniVersion 0.4.0 or later"));
    }
    let cid = env.require_container_id()?;
    let ifname = env.require_ifname()?;
    let netns = env.require_netns()?;
    let host = netlink::host_ifname(cid, ifname);
    let att = daemon::cni_check(&conf.socket, daemon::cni_ref(cid, ifname))
        .map_err(|e| e.to_cni("CniCheck"))?
        .ok_or_else(|| CniError::new(UNKNOWN_CONTAINER, format!("podswitchd has no attachment for {cid}/{ifname}")))?;
    if att.netns != netns {
        return Err(mismatch(format!("attachment is for namespace {:?}, not {netns:?}", att.netns)));
    }
    let (mut want, _) = attachment_net(&att)?;
    if let Some(prev) = &conf.prev_result {
        for ip in prev.get("ips").and_then(|v| v.as_array()).into_iter().flatten() {
            if let Some(p) = ip.get("address").and_then(|a| a.as_str()).and_then(|a| a.parse::<Prefix>().ok()) {
                if !want.contains(&p) {
                    want.push(p);
                }
            }
        }
    }
    let h = netlink::link(None, &host).map_err(io)?.ok_or_else(|| mismatch(format!("host end {host} is missing")))?;
    if !h.up {
        return Err(mismatch(format!("host end {host} is down")));
    }
    let c = netlink::link(Some(Path::new(netns)), ifname)
        .map_err(io)?
        .ok_or_else(|| mismatch(format!("{ifname} is missing from {netns}")))?;
    if !c.up {
        return Err(mismatch(format!("{ifname} in {netns} is down")));
    }
    for p in &want {
        if !c.addresses.contains(p) {
            return Err(mismatch(format!("{ifname} in {netns} lacks address {p}")));
        }
    }
    if !att.mac.is_empty() && !att.mac.eq_ignore_ascii_case(&c.mac) {
        return Err(mismatch(format!("{ifname} has MAC {}, podswitchd recorded {}", c.mac, att.mac)));
    }
    Ok(())
}

/// STATUS (spec 1.1): ready when CniStatus says so; otherwise, or when the daemon cannot be
/// asked, code 50 (plugin not available).
fn status(conf: &NetConf) -> Result<(), CniError> {
    match daemon::cni_status(&conf.socket) {
        Ok(s) if s.ready => Ok(()),
        Ok(s) => Err(CniError::new(PLUGIN_NOT_AVAILABLE, "podswitchd is not ready").with_details(s.message)),
        Err(e) => {
            let c = e.to_cni("CniStatus");
            Err(CniError::new(PLUGIN_NOT_AVAILABLE, "podswitchd is not available").with_details(c.to_string()))
        }
    }
}

/// GC (spec 1.1): CniGc with `cni.dev/valid-attachments` (required: an absent list is code 7,
/// so a malformed call never removes everything), then the host ends of the attachments the
/// daemon removed. Host ends the daemon has no record of are left alone.
fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| CniError::new(INVALID_CONFIG, "GC needs \"cni.dev/valid-attachments\""))?;
    let refs = valid.iter().map(|a| daemon::cni_ref(&a.container_id, &a.ifname)).collect();
    let resp = daemon::cni_gc(&conf.socket, refs).map_err(|e| e.to_cni("CniGc"))?;
    let mut failures = Vec::new();
    for att in resp.removed {
        let host = if netlink::is_host_ifname(&att.host_interface) {
            att.host_interface.clone()
        } else if let Some(r) = &att.r#ref {
            netlink::host_ifname(&r.container_id, &r.ifname)
        } else {
            continue;
        };
        if let Err(e) = netlink::delete_host(&host) {
            failures.push(e.msg);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(IO_FAILURE, "GC could not delete every host end").with_details(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TRY_AGAIN_LATER;

    fn env(cmd: &str) -> Env {
        Env { command: Some(cmd.into()), ..Env::default() }
    }

    #[test]
    fn version_answer() {
        let out = run(&env("VERSION"), b"").unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, json!({"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}));
    }

    #[test]
    fn commands_and_env_are_checked_first() {
        assert_eq!(run(&Env::default(), b"").unwrap_err().code, INVALID_ENV);
        assert_eq!(run(&env("add"), b"").unwrap_err().code, INVALID_ENV);
        let conf =
            br#"{"cniVersion":"1.0.0","name":"podswitch","type":"podswitch-cni","socket":"/nonexistent/psw.sock"}"#;
        let e = run(&env("ADD"), conf).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (INVALID_ENV, "CNI_CONTAINERID is not set"));
        let e = run(&Env { container_id: Some("c1".into()), ..env("ADD") }, conf).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (INVALID_ENV, "CNI_IFNAME is not set"));
        let e =
            run(&Env { container_id: Some("c1".into()), ifname: Some("eth0".into()), ..env("ADD") }, conf).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (INVALID_ENV, "CNI_NETNS is not set"));
        let e = run(&env("ADD"), br#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#).unwrap_err();
        assert_eq!(e.code, INCOMPATIBLE_VERSION);
        let e = run(&env("CHECK"), br#"{"cniVersion":"0.3.1","name":"n","type":"t"}"#).unwrap_err();
        assert_eq!(e.code, INCOMPATIBLE_VERSION);
        let e = run(&env("GC"), br#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
    }

    #[test]
    fn an_absent_daemon_is_try_later_or_not_available() {
        let conf =
            br#"{"cniVersion":"1.1.0","name":"podswitch","type":"podswitch-cni","socket":"/nonexistent/psw.sock",
            "cni.dev/valid-attachments":[]}"#;
        assert_eq!(run(&env("STATUS"), conf).unwrap_err().code, PLUGIN_NOT_AVAILABLE);
        assert_eq!(run(&env("GC"), conf).unwrap_err().code, TRY_AGAIN_LATER);
        let add = Env {
            container_id: Some("c1".into()),
            ifname: Some("eth0".into()),
            netns: Some("/nonexistent/ns".into()),
            ..env("ADD")
        };
        assert_eq!(run(&add, conf).unwrap_err().code, TRY_AGAIN_LATER);
    }

    #[test]
    fn results_come_from_the_attachment() {
        let att = pb::CniAttachment {
            ips: vec![
                pb::CniIp { address: "10.244.1.5/24".into(), gateway: "10.244.1.1".into() },
                pb::CniIp { address: "fd00:1::5/64".into(), gateway: String::new() },
            ],
            routes: vec![pb::CniRoute { dst: "0.0.0.0/0".into(), gw: "10.244.1.1".into() }],
            dns: Some(pb::CniDns {
                nameservers: vec!["10.96.0.10".into()],
                domain: "cluster.local".into(),
                search: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            mtu: 1450,
            ..Default::default()
        };
        let (addrs, routes) = attachment_net(&att).unwrap();
        assert_eq!(addrs.len(), 2);
        assert_eq!(routes[0].gw, Some("10.244.1.1".parse().unwrap()));
        let link = |name: &str, mac: &str| netlink::Link {
            index: 2,
            name: name.into(),
            mac: mac.into(),
            mtu: 1450,
            up: true,
            kind: "veth".into(),
            addresses: vec![],
        };
        let r = build_result(
            &att,
            &link("psw00000000000", "02:00:00:00:00:01"),
            &link("eth0", "02:00:00:00:00:02"),
            "/run/netns/p",
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["interfaces"][0], json!({"name":"psw00000000000","mac":"02:00:00:00:00:01"}));
        assert_eq!(v["interfaces"][1]["sandbox"], "/run/netns/p");
        assert_eq!(v["ips"][0], json!({"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":1}));
        assert_eq!(v["ips"][1], json!({"address":"fd00:1::5/64","interface":1}));
        assert_eq!(v["routes"], json!([{"dst":"0.0.0.0/0","gw":"10.244.1.1"}]));
        assert_eq!(v["dns"]["options"], json!(["ndots:5"]));
        let bad =
            pb::CniAttachment { ips: vec![pb::CniIp { address: "10.0.0.1".into(), gateway: String::new() }], ..att };
        assert_eq!(attachment_net(&bad).unwrap_err().code, DAEMON_REFUSED);
    }
}
