//! The controller's side of ports attached at run time: `podswitchctl port add/del` and the
//! CNI plugin's ADD, DEL, CHECK, GC and STATUS. Each is one change of the store (an
//! attachment object), so it is built, opened, saved and published like any other change,
//! and refused whole.

use super::{Controller, Outcome, Refusal, State, WorkerCmd};
use crate::attach::{self, AddRequest, Attachment, CniInfo, CniRef, CniResult, Dns};
use crate::build::PortSpec;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::mpsc;
use std::time::Duration;
use switch_core::addr::Prefix;
use switch_core::packet::PortId;

/// How long a worker may take to open or close a port.
const WORKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest interface name Linux takes (IFNAMSIZ less the terminating NUL).
const MAX_IFNAME: usize = 15;

/// A port opened at run time: its id and interface.
pub(super) type OpenPort = (PortId, String);

/// A port as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOut {
    pub name: String,
    pub id: u16,
    pub interface: String,
    pub generation: u64,
}

fn check_ifname(what: &str, s: &str) -> Result<(), Refusal> {
    let ok = !s.is_empty()
        && s.len() <= MAX_IFNAME
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(Refusal::Invalid(format!(
            "{what} '{s}' is not an interface name (1-{MAX_IFNAME} printable characters, no '/' or ':')"
        )))
    }
}

/// The resolver configuration of a pod's CNI result, as kubelet makes it for its dnsPolicy
/// (ClusterFirst, also when absent: the cluster DNS with the search list and ndots:5; Default:
/// the node's resolv.conf; None: only spec.dnsConfig), with spec.dnsConfig's nameservers and
/// searches appended and its options overriding those of the same name.
pub(crate) fn pod_dns(
    pod: Option<&crate::config::PodConfig>,
    cluster_first: Dns,
    node: impl FnOnce() -> crate::dns::ResolvConf,
) -> Dns {
    let mut d = match pod.and_then(|p| p.dns_policy.as_deref()) {
        Some("Default") => {
            let r = node();
            Dns {
                // A loopback resolver of the node (systemd-resolved's 127.0.0.53) is not
                // reachable from a pod: left out, as kubelet does.
                nameservers: r.nameservers.iter().filter(|a| !a.is_loopback()).map(|a| a.to_string()).collect(),
                domain: String::new(),
                search: r.search,
                options: r.ndots.map(|n| vec![format!("ndots:{n}")]).unwrap_or_default(),
            }
        }
        Some("None") => Dns::default(),
        _ => cluster_first,
    };
    if let Some(c) = pod.and_then(|p| p.dns_config.as_ref()) {
        for n in &c.nameservers {
            if !d.nameservers.contains(n) {
                d.nameservers.push(n.clone());
            }
        }
        for s in &c.searches {
            if !d.search.contains(s) {
                d.search.push(s.clone());
            }
        }
        for o in &c.options {
            let name = o.split(':').next().unwrap_or(o);
            d.options.retain(|x| x.split(':').next() != Some(name));
            d.options.push(o.clone());
        }
    }
    // A resolver reads at most three nameservers (resolv.conf(5), MAXNS; kubelet's limit).
    d.nameservers.truncate(3);
    d
}

/// A DNS-1123 label (Kubernetes object names of pods and namespaces).
fn check_label(what: &str, s: &str) -> Result<(), Refusal> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Refusal::Invalid(format!(
            "{what} '{s}' is not a valid name (RFC 1123: lower-case letters, digits, '-', '.')"
        )))
    }
}

impl Controller {
    /// Which runtime ports a built snapshot adds and removes, compared with those open.
    pub(super) fn port_plan(&self, st: &State, ports: &[PortSpec]) -> (Vec<OpenPort>, Vec<OpenPort>) {
        let want: BTreeMap<PortId, String> =
            ports.iter().map(|p| (p.id, p.interface.clone().unwrap_or_default())).collect();
        let opening = want.iter().filter(|(id, i)| st.open.get(id) != Some(i)).map(|(a, b)| (*a, b.clone())).collect();
        let closing = st.open.iter().filter(|(id, i)| want.get(id) != Some(i)).map(|(a, b)| (*a, b.clone())).collect();
        (opening, closing)
    }

    /// Opens ports on every worker, in turn (each joins what the previous one set up);
    /// all or none.
    pub(super) fn open_ports(&self, ports: &[(PortId, String)]) -> Result<(), Refusal> {
        let links = self.workers.lock().map_err(|_| Refusal::Unavailable("worker list poisoned".into()))?.clone();
        let mut done: Vec<(PortId, String)> = Vec::new();
        for (id, interface) in ports {
            let mut share = io_backends::PortShare { fanout: None, workers: links.len() };
            for link in &links {
                let (tx, rx) = mpsc::channel();
                let sent =
                    link.send(WorkerCmd::AttachPort { port: *id, interface: interface.clone(), share, reply: tx });
                let r = sent.and_then(|()| {
                    rx.recv_timeout(WORKER_TIMEOUT)
                        .map_err(|_| Refusal::Unavailable("a worker did not answer within 5 s".into()))?
                        .map_err(|m| Refusal::Precondition(format!("port {}: {m}", id.0)))
                });
                match r {
                    Ok(s) => share = s,
                    Err(e) => {
                        // Workers that opened it close it again, with the ports done before.
                        done.push((*id, interface.clone()));
                        self.close_ports(&done);
                        return Err(e);
                    }
                }
            }
            done.push((*id, interface.clone()));
        }
        Ok(())
    }

    /// After a restart: opens on the workers, now running, the attached ports the restored
    /// snapshot has. A port whose interface has gone (its container ended while the daemon
    /// was down) stays recorded but closed, with a warning, until the runtime's CNI DEL (or
    /// GC); CNI CHECK reports it (the plugin finds no host end).
    pub fn reopen_ports(&self) {
        let Ok(mut st) = self.lock() else { return };
        let ports: Vec<(PortId, String)> = std::mem::take(&mut st.open).into_iter().collect();
        for (id, interface) in ports {
            if let Err(e) = self.open_ports(&[(id, interface.clone())]) {
                tracing::warn!(
                    "attached port {} ({interface}) not reopened: {e}; kept as a record until the runtime's DEL",
                    id.0
                );
            }
            // Counted as open either way: a later change must not try (and fail) to open it
            // again, which would refuse every change until the runtime's DEL comes; closing
            // it then is harmless.
            st.open.insert(id, interface);
        }
    }

    /// Closes ports on every worker (best effort: a worker that has stopped has closed them).
    pub(super) fn close_ports(&self, ports: &[(PortId, String)]) {
        let Ok(links) = self.workers.lock().map(|l| l.clone()) else { return };
        for (id, _) in ports {
            for link in &links {
                let (tx, rx) = mpsc::channel();
                if link.send(WorkerCmd::DetachPort { port: *id, reply: tx }).is_ok() {
                    let _ = rx.recv_timeout(WORKER_TIMEOUT);
                }
            }
        }
    }

    /// The lowest port id that no port uses.
    fn free_port_id(st: &State) -> Result<u16, Refusal> {
        let used = st.store.port_ids();
        let max = st.store.base().datapath.max_ports.min(usize::from(u16::MAX));
        (0..max as u16)
            .find(|i| !used.contains(i))
            .ok_or_else(|| Refusal::Exhausted(format!("all {max} port ids are in use (datapath.max_ports)")))
    }

    /// Adds a port on interface `interface` at run time.
    pub fn add_port(&self, name: &str, kind: &str, interface: &str) -> Result<PortOut, Refusal> {
        if !matches!(kind, "" | "pod") {
            return Err(Refusal::Invalid(format!(
                "kind '{kind}': only pod ports come and go at run time (uplink and host ports are in the config file)"
            )));
        }
        check_ifname("port name", name)?;
        check_ifname("interface", interface)?;
        let mut st = self.lock()?;
        if st.store.attachments().any(|a| a.interface == interface) {
            return Err(Refusal::Precondition(format!("interface {interface} is already a port")));
        }
        let id = Controller::free_port_id(&st)?;
        let a = Attachment { port: name.into(), id, interface: interface.into(), cni: None };
        let exists =
            st.store.attachments().any(|a| a.port == name) || st.store.base().ports.iter().any(|p| p.name == name);
        if exists {
            return Err(Refusal::Precondition(format!("port {name} exists")));
        }
        let o = self.change_locked(&mut st, "attached", move |s| Ok(s.attach(a)))?;
        Ok(PortOut { name: name.into(), id, interface: interface.into(), generation: o.generation })
    }

    /// Removes a port added at run time (or by the CNI plugin).
    pub fn remove_port(&self, name: &str) -> Result<PortOut, Refusal> {
        let mut st = self.lock()?;
        let Some(a) = st.store.attachments().find(|a| a.port == name).cloned() else {
            if st.store.base().ports.iter().any(|p| p.name == name) {
                return Err(Refusal::Precondition(format!(
                    "port {name} is in the config file; it changes only with a restart"
                )));
            }
            return Err(Refusal::NotFound(format!("port {name} not found")));
        };
        let o = self.change_locked(&mut st, "detached", |s| s.detach(name).map(|(_, c)| c))?;
        Ok(PortOut { name: a.port, id: a.id, interface: a.interface, generation: o.generation })
    }

    /// CNI ADD: attaches the pod's interface and allocates its addresses. Called again for
    /// the same container and interface, returns what was attached.
    pub fn cni_add(&self, r: AddRequest) -> Result<CniResult, Refusal> {
        check_ifname("host_interface", &r.host_interface)?;
        if r.cni.container_id.is_empty() || r.cni.ifname.is_empty() {
            return Err(Refusal::Invalid("container_id and ifname are required".into()));
        }
        check_ifname("ifname", &r.cni.ifname)?;
        let mac: switch_core::wire::MacAddr =
            r.mac.parse().map_err(|_| Refusal::Invalid(format!("mac '{}' is not a MAC address", r.mac)))?;
        if mac.is_multicast() || mac == switch_core::wire::MacAddr::ZERO {
            return Err(Refusal::Invalid(format!("mac {} is not a unicast address", r.mac)));
        }
        let namespace = if r.pod_namespace.is_empty() { "default".to_string() } else { r.pod_namespace.clone() };
        let name = if r.pod_name.is_empty() { r.cni.container_id.clone() } else { r.pod_name.clone() };
        check_label("pod namespace", &namespace)?;
        check_label("pod name", &name)?;
        let labels = attach::labels_from(&r.annotations).map_err(Refusal::Invalid)?;
        let mut st = self.lock()?;
        if let Some(a) = st.store.attachments().find(|a| a.cni.as_ref().is_some_and(|c| c.cni == r.cni)) {
            return Ok(self.result_of(&st, a.clone()));
        }
        if let Some(a) = st.store.attachments().find(|a| a.port == r.host_interface || a.interface == r.host_interface)
        {
            return Err(Refusal::Precondition(format!("interface {} is already port {}", r.host_interface, a.port)));
        }
        if st.store.base().ports.iter().any(|p| p.name == r.host_interface) {
            return Err(Refusal::Precondition(format!("{} is a port of the config file", r.host_interface)));
        }
        let taken = st.store.attachments().find_map(|a| {
            let c = a.cni.as_ref()?;
            (c.pod_namespace == namespace && c.pod_name == name).then(|| c.cni.clone())
        });
        if let Some(other) = taken {
            return Err(Refusal::Precondition(format!("pod {namespace}/{name} is already attached ({other})")));
        }
        let id = Controller::free_port_id(&st)?;
        let node = st.store.base().node.clone();
        let mut used: HashSet<IpAddr> = st.store.pod_ips();
        let mut addresses = Vec::new();
        let mut last = st.ipam_last.clone();
        let mut families = HashSet::new();
        for c in &node.pod_cidrs {
            let Ok(cidr) = c.parse::<Prefix>() else { continue };
            // One address per family, from the first CIDR of that family with room.
            if families.contains(&cidr.is_v4()) {
                continue;
            }
            let prev = last.get(&cidr.to_string()).and_then(|s| s.parse().ok());
            if let Some(ip) = attach::allocate(&cidr, &used, prev) {
                used.insert(ip);
                last.insert(cidr.to_string(), ip.to_string());
                addresses.push(format!("{ip}/{}", cidr.len()));
                families.insert(cidr.is_v4());
            }
        }
        if addresses.is_empty() {
            return Err(if node.pod_cidrs.is_empty() {
                Refusal::Precondition(format!("node {} has no pod_cidrs to allocate from", node.name))
            } else {
                Refusal::Exhausted(format!("no free address in the pod CIDRs {}", node.pod_cidrs.join(", ")))
            });
        }
        let a = Attachment {
            port: r.host_interface.clone(),
            id,
            interface: r.host_interface.clone(),
            cni: Some(CniInfo {
                cni: r.cni.clone(),
                netns: r.netns.clone(),
                mac: mac.to_string(),
                pod_namespace: namespace,
                pod_name: name,
                labels,
                addresses,
            }),
        };
        let before = std::mem::replace(&mut st.ipam_last, last);
        let a2 = a.clone();
        let result = match self.change_locked(&mut st, "attached", move |s| Ok(s.attach(a2))) {
            Ok(_) => self.result_of(&st, a.clone()),
            Err(e) => {
                st.ipam_last = before;
                return Err(e);
            }
        };
        drop(st);
        // In cluster mode the other nodes learn the pod from the cluster store. Without it
        // the ADD fails (the runtime then calls DEL, which detaches the port).
        self.publish_pod(&a, true)?;
        Ok(result)
    }

    /// CNI DEL: detaches the pod and frees its addresses; `NotFound` when nothing is
    /// attached for `r`.
    pub fn cni_del(&self, r: &CniRef) -> Result<CniResult, Refusal> {
        let mut st = self.lock()?;
        let a = Controller::find_cni(&st, r)?;
        let port = a.port.clone();
        self.change_locked(&mut st, "detached", |s| s.detach(&port).map(|(_, c)| c))?;
        let result = self.result_of(&st, a.clone());
        drop(st);
        if let Err(e) = self.publish_pod(&a, false) {
            // The port is gone here; the store keeps the pod until its next resync or DEL.
            tracing::warn!("pod of {port} not removed from the cluster store: {e}");
        }
        Ok(result)
    }

    /// CNI CHECK: what is attached for `r`.
    pub fn cni_check(&self, r: &CniRef) -> Result<CniResult, Refusal> {
        let st = self.lock()?;
        let a = Controller::find_cni(&st, r)?;
        Ok(self.result_of(&st, a))
    }

    /// CNI GC: detaches every CNI attachment not in `valid`, in one change.
    pub fn cni_gc(&self, valid: &[CniRef]) -> Result<Vec<CniResult>, Refusal> {
        let mut st = self.lock()?;
        let keep: HashSet<&CniRef> = valid.iter().collect();
        let gone: Vec<Attachment> = st
            .store
            .attachments()
            .filter(|a| a.cni.as_ref().is_some_and(|c| !keep.contains(&c.cni)))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = gone.iter().map(|a| a.port.clone()).collect();
        self.change_locked(&mut st, "detached", |s| {
            let mut all = Vec::new();
            for n in &names {
                all.extend(s.detach(n)?.1);
            }
            Ok(all)
        })?;
        let out = gone.iter().map(|a| self.result_of(&st, a.clone())).collect();
        drop(st);
        for a in &gone {
            if let Err(e) = self.publish_pod(a, false) {
                tracing::warn!("pod of {} not removed from the cluster store: {e}", a.port);
            }
        }
        Ok(out)
    }

    /// CNI STATUS: whether ADD can succeed now.
    pub fn cni_status(&self) -> (bool, String) {
        let Ok(st) = self.lock() else { return (false, "control state poisoned".into()) };
        if st.store.base().node.pod_cidrs.is_empty() {
            return (false, format!("node {} has no pod_cidrs", st.store.base().node.name));
        }
        match self.workers.lock() {
            Ok(w) if !w.is_empty() => (true, String::new()),
            _ => (false, "no worker is running".into()),
        }
    }

    fn find_cni(st: &State, r: &CniRef) -> Result<Attachment, Refusal> {
        st.store
            .attachments()
            .find(|a| a.cni.as_ref().is_some_and(|c| c.cni == *r))
            .cloned()
            .ok_or_else(|| Refusal::NotFound(format!("nothing is attached for {r}")))
    }

    /// The result the plugin configures in the container: gateways, default routes, MTU and
    /// cluster DNS of this node.
    fn result_of(&self, st: &State, a: Attachment) -> CniResult {
        let node = &st.store.base().node;
        let cidrs: Vec<Prefix> = node.pod_cidrs.iter().filter_map(|c| c.parse().ok()).collect();
        let mut gateways = Vec::new();
        let mut routes = Vec::new();
        for ip in a.ips() {
            let gw = cidrs
                .iter()
                .find(|c| c.contains(ip.into()))
                .map(|c| attach::gateway(c).to_string())
                .unwrap_or_default();
            let dst = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            routes.push((dst.to_string(), gw.clone()));
            gateways.push(gw);
        }
        let t = self.cell.load();
        let v4_underlay = t.node.ipv4.is_some() || t.node.ipv6.is_none();
        let overhead = switch_core::overlay::outer_len(v4_underlay, t.node.tunnel);
        let mtu = t.node.uplink_mtu.saturating_sub(overhead as u16);
        let namespace = a.cni.as_ref().map(|c| c.pod_namespace.clone()).unwrap_or_default();
        let domain = node.cluster_domain.clone();
        // The cluster DNS addresses the switch answers on (kube-dns's cluster IPs, then
        // node.cluster_dns), as kubelet gives dnsPolicy ClusterFirst.
        let mut nameservers: Vec<String> = t.dns.addresses.iter().map(|a| a.to_string()).collect();
        if nameservers.is_empty() {
            nameservers = node.cluster_dns.clone();
        }
        let cluster_first = Dns {
            nameservers,
            search: vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()],
            domain,
            options: vec!["ndots:5".into()],
        };
        let pod = a.cni.as_ref().and_then(|c| {
            let key = crate::k8s::Key {
                kind: crate::k8s::Kind::Pod,
                namespace: c.pod_namespace.clone(),
                name: c.pod_name.clone(),
            };
            match st.store.get(&key) {
                Some(crate::k8s::Object::Pod(p)) => Some(p.clone()),
                _ => None,
            }
        });
        let resolv = || {
            std::fs::read_to_string(&st.store.base().dns.resolv_conf)
                .map(|t| crate::dns::parse_resolv_conf(&t))
                .unwrap_or_default()
        };
        let dns = pod_dns(pod.as_ref(), cluster_first, resolv);
        CniResult { attachment: a, gateways, routes, mtu, dns }
    }

    /// A change of this module's, under the lock already held.
    fn change_locked(
        &self,
        st: &mut State,
        action: &str,
        f: impl FnOnce(
            &mut crate::store::Store,
        ) -> Result<Vec<(crate::k8s::Key, crate::store::Action)>, crate::store::StoreError>,
    ) -> Result<Outcome, Refusal> {
        self.change_in(st, action, Vec::new(), false, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PodConfig, PodDnsConfig};

    fn pod(policy: Option<&str>, dns: Option<PodDnsConfig>) -> PodConfig {
        let mut p: PodConfig = toml::from_str("name = \"p\"\nips = []\n").expect("pod");
        p.dns_policy = policy.map(str::to_string);
        p.dns_config = dns;
        p
    }

    fn cluster() -> Dns {
        Dns {
            nameservers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
            search: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }
    }

    fn node() -> crate::dns::ResolvConf {
        crate::dns::parse_resolv_conf("nameserver 192.0.2.53\nsearch corp.example\noptions ndots:2\n")
    }

    #[test]
    fn a_pods_dns_policy_shapes_its_resolver_configuration() {
        assert_eq!(pod_dns(None, cluster(), node), cluster());
        assert_eq!(pod_dns(Some(&pod(Some("ClusterFirst"), None)), cluster(), node), cluster());
        let d = pod_dns(Some(&pod(Some("Default"), None)), cluster(), node);
        assert_eq!(
            (d.nameservers, d.search, d.options),
            (vec!["192.0.2.53".into()], vec!["corp.example".into()], vec!["ndots:2".into()])
        );
        let only = PodDnsConfig {
            nameservers: vec!["192.0.2.1".into()],
            searches: vec!["a.example".into()],
            options: vec!["edns0".into()],
        };
        let d = pod_dns(Some(&pod(Some("None"), Some(only.clone()))), cluster(), node);
        assert_eq!(
            (d.nameservers, d.search, d.options),
            (vec!["192.0.2.1".into()], vec!["a.example".into()], vec!["edns0".into()])
        );
        // ClusterFirst with dnsConfig: appended, and an option of the same name replaced.
        let extra =
            PodDnsConfig { nameservers: vec!["192.0.2.1".into()], searches: vec![], options: vec!["ndots:2".into()] };
        let d = pod_dns(Some(&pod(None, Some(extra))), cluster(), node);
        assert_eq!(d.nameservers, vec!["10.96.0.10".to_string(), "192.0.2.1".into()]);
        assert_eq!(d.options, vec!["ndots:2".to_string()]);
    }
}
