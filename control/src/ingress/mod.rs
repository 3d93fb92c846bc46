//! Ingress: networking.k8s.io/v1 Ingress served by a real nginx that podswitch programs, as
//! ingress-nginx does. L7 is not the switch's job: the daemon keeps Ingresses, IngressClasses
//! and TLS Secrets (checked here when applied, [`validate`]) and builds no table from them;
//! `podswitch-ingress`, a separate process in the nginx pod's network namespace, reads them
//! with Services and EndpointSlices over the control socket, renders nginx's configuration
//! ([`render`], pure and deterministic) and reloads nginx gracefully when it changes.

pub mod render;
#[cfg(test)]
mod tests;
pub mod validate;

/// The `spec.controller` of the IngressClasses podswitch-ingress serves.
pub const CONTROLLER: &str = "podswitch.io/ingress-nginx";
/// IngressClass annotation marking the class of Ingresses that name none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The legacy annotation naming an Ingress's class (before `spec.ingressClassName`).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Prefix of ingress-nginx's annotations.
pub const ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// The ingress-nginx annotations podswitch-ingress implements (after [`ANNOTATION_PREFIX`]).
pub const SUPPORTED_ANNOTATIONS: [&str; 6] =
    ["backend-protocol", "limit-rps", "proxy-body-size", "rewrite-target", "ssl-redirect", "whitelist-source-range"];
/// The Secret type of a TLS certificate and its key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
