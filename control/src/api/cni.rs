//! Conversions between the API's port and CNI messages and the controller's domain types
//! ([`crate::attach`]); the only place either side sees the other.

use super::pb;
use crate::attach::{AddRequest, CniRef, CniResult};
use crate::controller::PortOut;

/// The reference of a request; both parts are required.
pub fn cni_ref(r: Option<pb::CniRef>) -> Result<CniRef, String> {
    let r = r.ok_or("ref (container_id and ifname) is required")?;
    if r.container_id.is_empty() {
        return Err("ref.container_id is empty".into());
    }
    if r.ifname.is_empty() {
        return Err("ref.ifname is empty".into());
    }
    Ok(CniRef { container_id: r.container_id, ifname: r.ifname })
}

pub fn add_request(r: pb::CniAddRequest) -> Result<AddRequest, String> {
    Ok(AddRequest {
        cni: cni_ref(r.r#ref)?,
        netns: r.netns,
        host_interface: r.host_interface,
        mac: r.mac,
        pod_namespace: r.pod_namespace,
        pod_name: r.pod_name,
        annotations: r.annotations.into_iter().collect(),
    })
}

pub fn attachment_pb(r: &CniResult) -> pb::CniAttachment {
    let a = &r.attachment;
    let c = a.cni.as_ref();
    pb::CniAttachment {
        r#ref: c.map(|c| pb::CniRef { container_id: c.cni.container_id.clone(), ifname: c.cni.ifname.clone() }),
        netns: c.map(|c| c.netns.clone()).unwrap_or_default(),
        host_interface: a.interface.clone(),
        port: a.port.clone(),
        port_id: u32::from(a.id),
        mac: c.map(|c| c.mac.clone()).unwrap_or_default(),
        ips: c
            .map(|c| {
                c.addresses
                    .iter()
                    .zip(&r.gateways)
                    .map(|(address, gateway)| pb::CniIp { address: address.clone(), gateway: gateway.clone() })
                    .collect()
            })
            .unwrap_or_default(),
        routes: r.routes.iter().map(|(dst, gw)| pb::CniRoute { dst: dst.clone(), gw: gw.clone() }).collect(),
        mtu: u32::from(r.mtu),
        dns: Some(pb::CniDns {
            nameservers: r.dns.nameservers.clone(),
            domain: r.dns.domain.clone(),
            search: r.dns.search.clone(),
            options: r.dns.options.clone(),
        }),
        pod_namespace: c.map(|c| c.pod_namespace.clone()).unwrap_or_default(),
        pod_name: c.map(|c| c.pod_name.clone()).unwrap_or_default(),
    }
}

pub fn port_pb(p: &PortOut) -> pb::PortResponse {
    pb::PortResponse {
        name: p.name.clone(),
        id: u32::from(p.id),
        interface: p.interface.clone(),
        generation: p.generation,
    }
}
