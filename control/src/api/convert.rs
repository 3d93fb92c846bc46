//! Conversions between the control API's protobuf messages and the controller's domain types
//! (`controller.rs`): the controller never sees protobuf.

use super::pb;
use crate::controller::{
    Counters, Event, FlowFilter, FlowInfo, FlowList, Listing, Manifest, ObjectRef, Outcome, Refusal, TraceResult,
};
use crate::k8s::Key;
use crate::store::Action;

pub fn manifests(m: Vec<pb::Manifest>) -> Vec<Manifest> {
    m.into_iter().map(|m| Manifest { format: m.format, source: m.source, content: m.content }).collect()
}

pub fn object_refs(r: Vec<pb::ObjectRef>) -> Vec<ObjectRef> {
    r.into_iter().map(|r| ObjectRef { kind: r.kind, namespace: r.namespace, name: r.name }).collect()
}

pub fn key(k: &Key) -> pb::ObjectRef {
    pb::ObjectRef { kind: k.kind.name().into(), namespace: k.namespace.clone(), name: k.name.clone() }
}

fn change(k: &Key, a: Action) -> pb::Change {
    pb::Change { object: Some(key(k)), action: a.name().into() }
}

pub fn outcome(o: &Outcome) -> pb::ChangeResponse {
    pb::ChangeResponse {
        generation: o.generation,
        changes: o.changes.iter().map(|(k, a)| change(k, *a)).collect(),
        warnings: o.warnings.clone(),
        build_micros: o.build_micros,
        build_scope: o.scope.into(),
    }
}

pub fn route(r: pb::Route) -> crate::config::RouteConfig {
    crate::config::RouteConfig { prefix: r.prefix, via: r.via, mac: Some(r.mac).filter(|m| !m.is_empty()) }
}

pub fn listing(l: Listing) -> pb::ListResponse {
    pb::ListResponse {
        generation: l.generation,
        objects: l
            .objects
            .into_iter()
            .map(|o| pb::Object {
                r#ref: Some(key(&o.key)),
                json: o.json,
                origin: o.origin.name().into(),
                kubernetes: o.kubernetes.unwrap_or_default(),
            })
            .collect(),
    }
}

pub fn counters(c: Counters) -> pb::CountersResponse {
    let t = c.tables;
    pb::CountersResponse {
        generation: c.generation,
        ports: c
            .ports
            .into_iter()
            .map(|p| pb::PortCounters {
                name: p.name,
                kind: p.kind,
                io: p.io,
                rx_packets: p.rx_packets,
                rx_bytes: p.rx_bytes,
                tx_packets: p.tx_packets,
                tx_bytes: p.tx_bytes,
                drops: p.drops,
            })
            .collect(),
        drops: c.drops,
        events: c.events,
        tables: Some(pb::TableSizes {
            endpoints: t.endpoints,
            routes: t.routes,
            service_ports: t.service_ports,
            frontends: t.frontends,
            policy_classifiers: t.policy_classifiers,
            policy_rules: t.policy_rules,
            conntrack_entries: t.conntrack_entries,
            conntrack_capacity: t.conntrack_capacity,
            conntrack_evicted: t.conntrack_evicted,
            pool_free: t.pool_free,
        }),
        workers: c.workers,
        last_apply_micros: c.last_apply_micros,
    }
}

/// A conntrack filter from the request; errors name the bad field.
pub fn filter(f: &pb::ConntrackFilter) -> Result<FlowFilter, Refusal> {
    FlowFilter::parse(&f.protocol, &f.address, f.port)
}

pub fn flow(f: FlowInfo) -> pb::Flow {
    pb::Flow {
        protocol: f.protocol,
        src: f.src,
        dst: f.dst,
        xlate_src: f.xlate_src,
        xlate_dst: f.xlate_dst,
        state: f.state,
        expires_in_ms: f.expires_in_ms,
        packets: f.packets,
        bytes: f.bytes,
        service: f.service,
        egress_rule: f.egress_rule,
        ingress_rule: f.ingress_rule,
        worker: u32::from(f.worker),
    }
}

pub fn flows(l: FlowList) -> pb::ConntrackList {
    pb::ConntrackList { flows: l.flows.into_iter().map(flow).collect(), truncated: l.truncated }
}

pub fn trace_spec(r: pb::TraceRequest) -> crate::trace::TraceSpec {
    crate::trace::TraceSpec { protocol: r.protocol, src: r.src, dst: r.dst, input: r.r#in, tcp_flags: r.tcp_flags }
}

pub fn trace(t: TraceResult) -> pb::TraceResponse {
    pb::TraceResponse {
        generation: t.generation,
        steps: t.steps.into_iter().map(|(stage, result)| pb::TraceStep { stage, result }).collect(),
        verdict: t.verdict.into(),
        detail: t.detail,
        rule: t.rule,
    }
}

pub fn event(e: Event) -> pb::Event {
    pb::Event {
        generation: e.generation,
        action: e.action,
        changes: e.changes.iter().map(|(k, a)| change(k, *a)).collect(),
        message: e.message,
        unix_millis: e.unix_millis,
    }
}
