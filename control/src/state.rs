//! The daemon's local state: every object applied through the API, every port attached at
//! run time (with its pod's addresses) and the address allocator's positions, in one JSON file
//! that a restarted daemon reads before it opens a port, so that nothing it admitted or
//! denied before a crash is forgotten (NetworkPolicies fail closed across restarts).
//!
//! Crash safety: the file is replaced atomically after every committed change: written whole
//! to `NAME.tmp` in the same directory, fsync'd, renamed over the old one, and the directory
//! fsync'd, so a `kill -9` or a power cut leaves either the old or the new state, never a
//! torn one. The write happens before the change is reported to the caller; a change whose
//! state cannot be written is refused and rolled back.

use crate::k8s::{Kind, Object};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The format tag of the file; a file with another tag is refused, not guessed at.
pub const FORMAT: &str = "podswitch-state/1";

/// File name inside the state directory.
pub const FILE_NAME: &str = "state.json";

/// Default state directory.
pub const DEFAULT_DIR: &str = "/var/lib/podswitch";

#[derive(Debug, Serialize, Deserialize)]
struct SavedObject {
    kind: String,
    object: serde_json::Value,
    /// The object's Kubernetes form, when it was applied as YAML or JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    format: String,
    /// Node name the state belongs to: a state directory moved to another node is refused.
    node: String,
    objects: Vec<SavedObject>,
    /// Per pod CIDR, the address handed out last (the allocator goes on from there).
    #[serde(default)]
    ipam_last: BTreeMap<String, String>,
}

/// What a state file holds.
#[derive(Debug, Default)]
pub struct State {
    pub objects: Vec<Object>,
    /// The Kubernetes form of the objects that have one.
    pub manifests: Vec<(crate::k8s::Key, serde_json::Value)>,
    pub ipam_last: BTreeMap<String, String>,
}

/// Why the state file could not be read or written. Errors name the file and the object.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Invalid(PathBuf, String),
}

/// The state file of a directory.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

fn object_json(o: &Object) -> Result<SavedObject, String> {
    let (kind, v) = match o {
        Object::Namespace(x) => ("Namespace", serde_json::to_value(x)),
        Object::Pod(x) => ("Pod", serde_json::to_value(x)),
        Object::Service(x) => ("Service", serde_json::to_value(x)),
        Object::Slice(x) => (x.kind.name(), serde_json::to_value(x)),
        Object::NetworkPolicy(x) => ("NetworkPolicy", serde_json::to_value(x)),
        Object::ConfigMap(x) => ("ConfigMap", serde_json::to_value(x)),
        Object::Kept(x) => (x.kind.name(), serde_json::to_value(x)),
        Object::Route(x) => ("Route", serde_json::to_value(x)),
        Object::Port(x) => ("Port", serde_json::to_value(x)),
    };
    Ok(SavedObject { kind: kind.into(), object: v.map_err(|e| e.to_string())?, manifest: None })
}

fn object_of(s: SavedObject) -> Result<Object, String> {
    let kind = Kind::parse(&s.kind).ok_or_else(|| format!("unknown kind '{}'", s.kind))?;
    let v = s.object;
    let o = match kind {
        Kind::Namespace => serde_json::from_value(v).map(Object::Namespace),
        Kind::Pod => serde_json::from_value(v).map(Object::Pod),
        Kind::Service => serde_json::from_value(v).map(Object::Service),
        Kind::EndpointSlice | Kind::Endpoints => serde_json::from_value::<crate::k8s::Slice>(v).map(|mut sl| {
            sl.kind = kind;
            Object::Slice(sl)
        }),
        Kind::NetworkPolicy => serde_json::from_value(v).map(Object::NetworkPolicy),
        Kind::ConfigMap => serde_json::from_value(v).map(Object::ConfigMap),
        Kind::Ingress | Kind::IngressClass | Kind::Secret => {
            serde_json::from_value::<crate::k8s::KeptObject>(v).map(|mut k| {
                k.kind = kind;
                Object::Kept(k)
            })
        }
        Kind::Route => serde_json::from_value(v).map(Object::Route),
        Kind::Port => serde_json::from_value(v).map(Object::Port),
        Kind::Node => return Err("Node: nodes are listed, never saved".into()),
    };
    o.map_err(|e| format!("{}: {e}", s.kind))
}

impl StateFile {
    /// The state file in `dir` (the directory created mode 0700 if missing, the file written
    /// mode 0600, when first saved).
    pub fn in_dir(dir: &Path) -> StateFile {
        StateFile { path: dir.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; a missing file is an empty state (first start). A file that cannot be
    /// parsed, or belongs to another node, is an error: the daemon must not start with less
    /// policy than it had.
    pub fn load(&self, node: &str) -> Result<State, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(StateError::Io(self.path.clone(), e)),
        };
        let invalid = |m: String| StateError::Invalid(self.path.clone(), m);
        let saved: Saved = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if saved.format != FORMAT {
            return Err(invalid(format!("format '{}' is not {FORMAT}", saved.format)));
        }
        if saved.node != node {
            return Err(invalid(format!("the state belongs to node '{}', this is '{node}'", saved.node)));
        }
        let mut objects = Vec::new();
        let mut manifests = Vec::new();
        for (i, mut o) in saved.objects.into_iter().enumerate() {
            let m = o.manifest.take();
            let o = object_of(o).map_err(|m| invalid(format!("objects[{i}]: {m}")))?;
            if let Some(m) = m {
                manifests.push((o.key(), m));
            }
            objects.push(o);
        }
        Ok(State { objects, manifests, ipam_last: saved.ipam_last })
    }

    /// Replaces the file with `objects` and the allocator positions, atomically and durably.
    pub fn save<'a>(
        &self,
        node: &str,
        objects: impl Iterator<Item = (&'a Object, Option<&'a serde_json::Value>)>,
        ipam_last: &BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        let io = |e: std::io::Error| StateError::Io(self.path.clone(), e);
        let objects = objects
            .map(|(o, m)| object_json(o).map(|s| SavedObject { manifest: m.cloned(), ..s }))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| StateError::Invalid(self.path.clone(), m))?;
        let saved = Saved { format: FORMAT.into(), node: node.into(), objects, ipam_last: ipam_last.clone() };
        let text = serde_json::to_vec(&saved).map_err(|e| StateError::Invalid(self.path.clone(), e.to_string()))?;
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.exists() {
            // Policies, labels and namespaces of the node: for root only.
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&text).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        // The new file is in place: the change is committed. A directory that cannot be
        // synced leaves the rename's durability to the file system's next commit, which is
        // worth a warning, not a refusal (refusing now would report a committed change as
        // refused).
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!("{}: directory not synced after the state was replaced: {e}", dir.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::{parse, Format, Validation};

    #[test]
    fn every_kind_goes_round_and_bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("psw-state-{}", std::process::id()));
        let f = StateFile::in_dir(&dir);
        assert!(f.load("n1").expect("missing is empty").objects.is_empty());
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [10.0.0.1]}]\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: web2}\nsubsets: [{addresses: [{ip: 10.0.0.2}], ports: [{port: 80}]}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-dns, namespace: kube-system}\ndata: {upstreamNameservers: '[\"8.8.8.8\"]'}\n";
        let mut objects = parse(Format::Yaml, "t", yaml, "n1", Validation::Strict).expect("parses").objects;
        objects.push(Object::Port(crate::attach::Attachment {
            port: "psw0123".into(),
            id: 7,
            interface: "psw0123".into(),
            cni: None,
        }));
        let last: BTreeMap<String, String> = [("10.244.1.0/24".to_string(), "10.244.1.9".to_string())].into();
        f.save("n1", objects.iter().map(|o| (o, None)), &last).expect("saves");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(f.path()).unwrap().permissions().mode() & 0o777, 0o600);
        let back = f.load("n1").expect("loads");
        let keys = |v: &[Object]| v.iter().map(|o| o.key()).collect::<Vec<_>>();
        assert_eq!(keys(&back.objects), keys(&objects));
        assert_eq!(back.ipam_last, last);
        let json = |v: &[Object]| serde_json::to_string(v).unwrap();
        assert_eq!(json(&back.objects), json(&objects));
        assert!(f.load("n2").unwrap_err().to_string().contains("belongs to node 'n1'"));
        std::fs::write(f.path(), "{\"format\":\"podswitch-state/1\",\"node\":\"n1\",\"objects\":[{\"kind\":\"Pod\",\"object\":{\"name\":1}}]}").unwrap();
        let e = f.load("n1").unwrap_err().to_string();
        assert!(e.contains("objects[0]: Pod"), "{e}");
        std::fs::write(f.path(), "{").unwrap();
        assert!(f.load("n1").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ingresses_classes_and_secrets_are_restored() {
        let dir = std::env::temp_dir().join(format!("psw-state-ing-{}", std::process::id()));
        let f = StateFile::in_dir(&dir);
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: podswitch}\nspec: {controller: podswitch.io/ingress-nginx}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: t, namespace: web}\ntype: kubernetes.io/tls\nstringData: {tls.crt: '-----BEGIN CERTIFICATE-----', tls.key: '-----BEGIN PRIVATE KEY-----'}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: web}\nspec: {defaultBackend: {service: {name: s, port: {number: 80}}}}\n";
        let p = parse(Format::Yaml, "ing.yaml", yaml, "n1", Validation::Strict).expect("parses");
        let keys: Vec<String> = p.objects.iter().map(|o| o.key().to_string()).collect();
        assert_eq!(keys, ["IngressClass podswitch", "Secret web/t", "Ingress web/i"]);
        let forms: BTreeMap<_, _> = p.manifests.iter().cloned().collect();
        f.save("n1", p.objects.iter().map(|o| (o, forms.get(&o.key()))), &BTreeMap::new()).expect("saves");
        let back = f.load("n1").expect("loads");
        let back_keys: Vec<String> = back.objects.iter().map(|o| o.key().to_string()).collect();
        assert_eq!(back_keys, keys, "kinds come back with the objects");
        assert_eq!(serde_json::to_value(&back.objects).ok(), serde_json::to_value(&p.objects).ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_ingress_is_refused_with_its_document_and_field() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.9, ports: [{port: 80}]}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad}\nspec:\n  rules:\n  - http:\n      paths: [{path: /a, pathType: Prefix, backend: {service: {name: s, port: {name: http, number: 80}}}}]\n";
        let e = parse(Format::Yaml, "bad.yaml", yaml, "n1", Validation::Strict).unwrap_err().to_string();
        assert!(
            e.contains("document 2 (Ingress default/bad): spec.rules[0].http.paths[0].backend.service.port: Invalid value: cannot set both port name & port number"),
            "{e}"
        );
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\ndata: {tls.crt: '%%%not-base64'}\n";
        let e = parse(Format::Yaml, "s.yaml", secret, "n1", Validation::Strict).unwrap_err().to_string();
        assert!(e.contains("Secret default/t") && !e.contains("not-base64"), "{e}");
    }

    #[test]
    fn a_config_map_and_its_kubernetes_form_are_restored() {
        let dir = std::env::temp_dir().join(format!("psw-state-cm-{}", std::process::id()));
        let f = StateFile::in_dir(&dir);
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-dns, namespace: kube-system, labels: {a: b}}\nimmutable: true\ndata:\n  stubDomains: '{\"acme.local\": [\"1.2.3.4\"]}'\n  hosts: |\n    10.0.0.1 db\n";
        let p = parse(Format::Yaml, "cm.yaml", yaml, "n1", Validation::Strict).expect("parses");
        let forms: BTreeMap<_, _> = p.manifests.iter().cloned().collect();
        f.save("n1", p.objects.iter().map(|o| (o, forms.get(&o.key()))), &BTreeMap::new()).expect("saves");
        let back = f.load("n1").expect("loads");
        assert_eq!(serde_json::to_value(&back.objects).ok(), serde_json::to_value(&p.objects).ok());
        assert_eq!(back.manifests, p.manifests, "labels and immutable come back with the form");
        let mut store = crate::store::Store::default();
        store.restore(back.objects, back.manifests);
        let c = store.config_map("kube-system", "kube-dns").expect("restored");
        assert_eq!(c.data["hosts"], "10.0.0.1 db\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
