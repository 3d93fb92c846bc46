//! Manifests to objects: Kubernetes YAML (multi-document, `kind: List` too) or JSON as
//! Kubernetes writes them, and podswitch TOML object sections, turned into the config model's
//! objects ([`Object`]). ConfigMaps are kept with their data for podswitch's own features
//! (the cluster DNS). Unknown fields of the parts podswitch implements (Service and
//! NetworkPolicy specs, EndpointSlices) are ignored with a warning; metadata, status and the
//! rest of a Pod's spec are read for what the switch needs and otherwise ignored silently.

mod convert;
pub mod endpointslice;
pub mod render;
pub mod selector;
#[cfg(test)]
mod tests;
pub mod types;

use crate::config::{ConfigMapConfig, NamespaceConfig, PodConfig, PolicyConfig, RouteConfig, ServiceConfig};
pub use convert::Slice;
use serde::{Deserialize, Serialize};

/// Annotation that names the switch port of a pod on this node (set by the CNI plugin).
pub const PORT_ANNOTATION: &str = "podswitch.io/port";
/// Annotation with the MAC address of a pod on this node.
pub const MAC_ANNOTATION: &str = "podswitch.io/mac";

/// The kinds of object the daemon holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    Endpoints,
    NetworkPolicy,
    /// Configuration data for podswitch's own features (the kube-dns ConfigMap); builds no
    /// table.
    ConfigMap,
    /// networking.k8s.io/v1 Ingress, kept for the ingress controller (`podswitch-ingress`);
    /// builds no table.
    Ingress,
    /// networking.k8s.io/v1 IngressClass (cluster-scoped), kept for the ingress controller.
    IngressClass,
    /// v1 Secret, kept for the ingress controller (TLS certificates); builds no table.
    Secret,
    Route,
    /// A switch port attached at run time (by the CNI plugin or `podswitchctl port add`).
    Port,
    /// A node of the cluster: listed (`get nodes`), never stored or applied.
    Node,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Endpoints => "Endpoints",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::ConfigMap => "ConfigMap",
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::Secret => "Secret",
            Kind::Route => "Route",
            Kind::Port => "Port",
            Kind::Node => "Node",
        }
    }

    /// A kind by its name, plural, or kubectl's short name, case-insensitive.
    pub fn parse(s: &str) -> Option<Kind> {
        let k = match s.to_ascii_lowercase().as_str() {
            "namespace" | "namespaces" | "ns" => Kind::Namespace,
            "pod" | "pods" | "po" => Kind::Pod,
            "service" | "services" | "svc" => Kind::Service,
            "endpointslice" | "endpointslices" | "eps" => Kind::EndpointSlice,
            "endpoints" | "ep" => Kind::Endpoints,
            "networkpolicy" | "networkpolicies" | "netpol" | "policy" | "policies" => Kind::NetworkPolicy,
            "configmap" | "configmaps" | "cm" => Kind::ConfigMap,
            "ingress" | "ingresses" | "ing" => Kind::Ingress,
            "ingressclass" | "ingressclasses" => Kind::IngressClass,
            "secret" | "secrets" => Kind::Secret,
            "route" | "routes" => Kind::Route,
            "port" | "ports" => Kind::Port,
            "node" | "nodes" | "no" => Kind::Node,
            _ => return None,
        };
        Some(k)
    }

    /// Kinds stored once for the whole cluster (in cluster mode, in the object source);
    /// routes and attached ports are per node, and nodes come from the node registry.
    pub fn cluster_wide(self) -> bool {
        !matches!(self, Kind::Route | Kind::Port | Kind::Node)
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::IngressClass | Kind::Route | Kind::Port | Kind::Node)
    }

    /// Kinds kept in their Kubernetes form for a controller outside the dataplane
    /// ([`Object::Kept`]): they build no table.
    pub fn kept(self) -> bool {
        matches!(self, Kind::Ingress | Kind::IngressClass | Kind::Secret)
    }
}

/// Identifies an object: kind, namespace (empty when not namespaced) and name (a route's
/// prefix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind.name(), self.name)
        } else {
            write!(f, "{} {}/{}", self.kind.name(), self.namespace, self.name)
        }
    }
}

/// One object in the config model's terms.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Object {
    Namespace(NamespaceConfig),
    Pod(PodConfig),
    Service(ServiceConfig),
    /// An EndpointSlice or an Endpoints object.
    Slice(Slice),
    NetworkPolicy(PolicyConfig),
    ConfigMap(ConfigMapConfig),
    /// An Ingress, IngressClass or Secret: checked at apply, kept as Kubernetes writes it.
    Kept(KeptObject),
    Route(RouteConfig),
    Port(crate::attach::Attachment),
}

impl Object {
    pub fn key(&self) -> Key {
        let (kind, namespace, name) = match self {
            Object::Namespace(n) => (Kind::Namespace, String::new(), n.name.clone()),
            Object::Pod(p) => (Kind::Pod, p.namespace.clone(), p.name.clone()),
            Object::Service(s) => (Kind::Service, s.namespace.clone(), s.name.clone()),
            Object::Slice(s) => (s.kind, s.namespace.clone(), s.name.clone()),
            Object::NetworkPolicy(p) => (Kind::NetworkPolicy, p.namespace.clone(), p.name.clone()),
            Object::ConfigMap(c) => (Kind::ConfigMap, c.namespace.clone(), c.name.clone()),
            Object::Kept(k) => (k.kind, k.namespace.clone(), k.name.clone()),
            Object::Route(r) => (Kind::Route, String::new(), r.prefix.clone()),
            Object::Port(a) => (Kind::Port, String::new(), a.port.clone()),
        };
        Key { kind, namespace, name }
    }
}

/// An object podswitch keeps for a controller outside the dataplane: an Ingress, an
/// IngressClass or a Secret (read by `podswitch-ingress` through `List`). It is checked when
/// applied (`crate::ingress::validate`), kept in its Kubernetes form, and builds no table; a
/// change of one is published as a new generation, so that its readers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptObject {
    /// Saved beside the object (the state file's kind), not in it.
    #[serde(skip, default = "kept_kind")]
    pub kind: Kind,
    pub name: String,
    /// Empty for an IngressClass (cluster-scoped).
    #[serde(default)]
    pub namespace: String,
    /// The object as Kubernetes writes it (apiVersion, kind, metadata, spec, and for a Secret
    /// its type and data).
    pub object: serde_json::Value,
}

fn kept_kind() -> Kind {
    Kind::Ingress
}

/// A manifest's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Toml,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }

    /// From a file name's extension.
    pub fn of_path(p: &std::path::Path) -> Option<Format> {
        p.extension().and_then(|e| e.to_str()).and_then(Format::parse)
    }
}

/// Objects read from a manifest, with warnings about what was ignored.
#[derive(Debug, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    pub warnings: Vec<String>,
    /// Documents that were read but not applied, each with its source, index and reason
    /// (an unsupported kind, a Pod without an address, ...). Also listed in `warnings`.
    pub skipped: Vec<String>,
    /// The Kubernetes form of each object read from YAML or JSON, as admitted (allocations
    /// written in): what is stored and printed back. TOML objects have none.
    pub manifests: Vec<(Key, serde_json::Value)>,
}

/// The API server's admission step: called for each Kubernetes document (after schema
/// validation, before conversion), with the document to complete in place (a Service's
/// allocations, a Pod's status). An error refuses the whole request; it names the field.
pub trait Admit {
    /// Completes `doc` (kind, namespace and name given); by default takes it as written.
    fn admit(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        doc: &mut serde_json::Value,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        let _ = (kind, namespace, name, doc, warnings);
        Ok(())
    }
}

/// For reading only the objects' names (a delete by manifest): a Service the allocators
/// would complete is taken as written, with no address.
#[derive(Debug, Default)]
pub struct NamesOnly;

impl Admit for NamesOnly {
    fn admit(
        &mut self,
        kind: &str,
        _: &str,
        _: &str,
        doc: &mut serde_json::Value,
        _: &mut Vec<String>,
    ) -> Result<(), String> {
        if kind == "Service" {
            if let Some(spec) = doc.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
                spec.remove("clusterIPs");
                spec.insert("clusterIP".into(), "None".into());
            }
        }
        Ok(())
    }
}

/// No admission: documents are converted as written (config checks, fuzzing, tests).
#[derive(Debug, Default)]
pub struct AsWritten;

impl Admit for AsWritten {}

/// How fields that the Kubernetes API schema does not know are treated, as kubectl's
/// `--validate` says: `strict` (the default) refuses the manifest, `warn` applies it with a
/// warning per field, `ignore` applies it silently. A document that does not fit the schema
/// (a value of the wrong type) or has a duplicate key in a mapping is refused in `strict`
/// mode; otherwise the last duplicate wins, as with kubectl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    #[default]
    Strict,
    Warn,
    Ignore,
}

impl Validation {
    /// `strict`, `warn` or `ignore`; empty means `strict`. kubectl's legacy `true`/`false`
    /// are `strict`/`ignore`.
    pub fn parse(s: &str) -> Option<Validation> {
        match s.to_ascii_lowercase().as_str() {
            "" | "strict" | "true" => Some(Validation::Strict),
            "warn" => Some(Validation::Warn),
            "ignore" | "false" => Some(Validation::Ignore),
            _ => None,
        }
    }
}

/// A document as a JSON value, read refusing duplicate keys in any mapping (`serde_json`'s
/// own `Value` keeps the last silently, which would hide a typo'd second `spec`).
struct NoDuplicates(serde_json::Value);

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor).map(NoDuplicates)
    }
}

struct NoDuplicatesVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicatesVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        NoDuplicates::deserialize(d).map(|v| v.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::new();
        while let Some(NoDuplicates(x)) = a.next_element()? {
            v.push(x);
        }
        Ok(serde_json::Value::Array(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut m = serde_json::Map::new();
        while let Some(k) = a.next_key::<String>()? {
            let NoDuplicates(v) = a.next_value()?;
            if m.insert(k.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format_args!("duplicate key `{k}` in a mapping")));
            }
        }
        Ok(serde_json::Value::Object(m))
    }
}

/// Why a manifest was refused: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {location}{message}")]
pub struct ManifestError {
    pub source_name: String,
    /// "document 2 (Service default/web): " or "line 4: ", or empty.
    pub location: String,
    pub message: String,
}

/// A JSON document; in strict mode a duplicate key is an error.
fn read_json(content: &str, validate: Validation) -> Result<serde_json::Value, serde_json::Error> {
    match validate {
        Validation::Strict => {
            let mut d = serde_json::Deserializer::from_str(content);
            let v = NoDuplicates::deserialize(&mut d)?;
            d.end()?;
            Ok(v.0)
        }
        _ => serde_json::from_str(content),
    }
}

/// The object sections of a podswitch TOML file, as `podswitchctl apply` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlObjects {
    #[serde(default)]
    namespaces: Vec<NamespaceConfig>,
    #[serde(default)]
    pods: Vec<PodConfig>,
    #[serde(default)]
    services: Vec<ServiceConfig>,
    #[serde(default)]
    policies: Vec<PolicyConfig>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

/// Reads every object of a manifest. `node` is this node's name: a Pod whose `spec.nodeName`
/// is this node must carry the port and MAC annotations of its attachment. Warnings and
/// skipped documents name `source`.
pub fn parse(
    format: Format,
    source: &str,
    content: &str,
    node: &str,
    validate: Validation,
) -> Result<Parsed, ManifestError> {
    parse_admitted(format, source, content, node, validate, &mut AsWritten)
}

/// [`parse`] with an admission step for Kubernetes documents (the allocators).
pub fn parse_admitted(
    format: Format,
    source: &str,
    content: &str,
    node: &str,
    validate: Validation,
    admit: &mut dyn Admit,
) -> Result<Parsed, ManifestError> {
    let mut p = parse_content(format, source, content, node, validate, admit)?;
    for w in p.warnings.iter_mut().chain(p.skipped.iter_mut()) {
        *w = format!("{source}: {w}");
    }
    Ok(p)
}

fn parse_content(
    format: Format,
    source: &str,
    content: &str,
    node: &str,
    validate: Validation,
    admit: &mut dyn Admit,
) -> Result<Parsed, ManifestError> {
    let err = |location: String, message: String| ManifestError { source_name: source.to_string(), location, message };
    match format {
        Format::Toml => {
            let t: TomlObjects = toml::from_str(content).map_err(|e| {
                let loc = e
                    .span()
                    .map(|s| {
                        let (l, c) = crate::error::line_col(content, s.start);
                        format!("line {l}, column {c}: ")
                    })
                    .unwrap_or_default();
                let mut m = e.message().trim().to_string();
                if m.contains("unknown field `node`")
                    || m.contains("unknown field `ports`")
                    || m.contains("unknown field `datapath`")
                    || m.contains("unknown field `nodes`")
                {
                    m.push_str(" (node, ports, nodes and datapath change only through the daemon's config file)");
                }
                err(loc, m)
            })?;
            let mut out = Parsed::default();
            out.objects.extend(t.namespaces.into_iter().map(Object::Namespace));
            out.objects.extend(t.pods.into_iter().map(Object::Pod));
            out.objects.extend(t.services.into_iter().map(Object::Service));
            out.objects.extend(t.policies.into_iter().map(Object::NetworkPolicy));
            out.objects.extend(t.routes.into_iter().map(Object::Route));
            Ok(out)
        }
        Format::Json => {
            let v = read_json(content, validate)
                .map_err(|e| err(format!("line {}, column {}: ", e.line(), e.column()), e.to_string()))?;
            let mut out = Parsed::default();
            convert::document(v, 1, node, validate, admit, &mut out).map_err(|(loc, m)| err(loc, m))?;
            Ok(out)
        }
        Format::Yaml => {
            let mut out = Parsed::default();
            for (i, doc) in serde_yaml_ng::Deserializer::from_str(content).enumerate() {
                let v = match validate {
                    Validation::Strict => NoDuplicates::deserialize(doc).map(|v| v.0),
                    _ => serde_json::Value::deserialize(doc),
                };
                let v = v.map_err(|e| {
                    let loc = match e.location() {
                        Some(l) => format!("document {}, line {}, column {}: ", i + 1, l.line(), l.column()),
                        None => format!("document {}: ", i + 1),
                    };
                    err(loc, e.to_string())
                })?;
                convert::document(v, i + 1, node, validate, admit, &mut out).map_err(|(loc, m)| err(loc, m))?;
            }
            Ok(out)
        }
    }
}
