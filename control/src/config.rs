//! The TOML configuration model: one file describes the node, its ports, remote nodes, routes
//! and the Kubernetes objects (namespaces, pods, services with their endpoints, network
//! policies) in Kubernetes' own terms. `build` turns it into a table snapshot.
//!
//! Unknown fields are errors: a typo in a config file should stop the daemon, not be ignored.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    #[serde(default)]
    pub datapath: DatapathConfig,
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub nodes: Vec<RemoteNodeConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub namespaces: Vec<NamespaceConfig>,
    #[serde(default)]
    pub pods: Vec<PodConfig>,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// Joins a cluster of nodes over etcd (absent: a single node with its local store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// `[dns]`: the cluster DNS the switch answers.
    #[serde(default)]
    pub dns: DnsConfig,
}

/// `[dns]`: cluster DNS answered by the switch (the Kubernetes DNS specification, schema
/// 1.1.0), for the zone `node.cluster_domain`, on the cluster IPs of the Service
/// `kube-system/kube-dns` and the addresses of `node.cluster_dns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Answer cluster DNS at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// TTL of the records and of negative answers (the SOA minimum), seconds (CoreDNS's
    /// kubernetes plugin: 5).
    #[serde(default = "default_dns_ttl")]
    pub ttl: u32,
    /// Upstream resolvers for names outside the cluster zone (`IP` or `IP:port`); default the
    /// nameservers of `resolv_conf`. The kube-dns ConfigMap's `upstreamNameservers` win.
    #[serde(default)]
    pub upstream: Vec<String>,
    /// The node's resolver configuration, read for upstreams when `upstream` is empty.
    #[serde(default = "default_resolv_conf")]
    pub resolv_conf: String,
    /// Run the daemon's resolver (TCP, forwarding, large answers) behind a port of the switch
    /// (a veth pair into a network namespace of its own). Live backends only.
    #[serde(default = "yes")]
    pub resolver: bool,
    /// The resolver's addresses (never seen by pods: queries are translated to them and the
    /// answers back). Link-local by default, as NodeLocal DNSCache's 169.254.20.10.
    #[serde(default = "default_resolver_ipv4")]
    pub resolver_ipv4: String,
    #[serde(default = "default_resolver_ipv6")]
    pub resolver_ipv6: String,
    /// Forwarded answers cached (entries).
    #[serde(default = "default_dns_cache")]
    pub cache_entries: usize,
    /// The resolver interface's MAC, set by the daemon when it creates the port (not read from
    /// the file).
    #[serde(skip)]
    pub resolver_mac: Option<String>,
    /// Static entries (name, address) from the kube-dns ConfigMap's `hosts`, filled in by the
    /// store when it merges the config (not read from the file).
    #[serde(skip)]
    pub hosts: Vec<(String, std::net::IpAddr)>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            ttl: default_dns_ttl(),
            upstream: Vec::new(),
            resolv_conf: default_resolv_conf(),
            resolver: true,
            resolver_ipv4: default_resolver_ipv4(),
            resolver_ipv6: default_resolver_ipv6(),
            cache_entries: default_dns_cache(),
            resolver_mac: None,
            hosts: Vec::new(),
        }
    }
}

impl DnsConfig {
    /// The resolver's addresses, `resolver_ipv4` and `resolver_ipv6` parsed (`None`: not an
    /// address of its family).
    pub fn resolver_addrs(&self) -> (Option<std::net::IpAddr>, Option<std::net::IpAddr>) {
        let v4 = self.resolver_ipv4.parse().ok().filter(std::net::IpAddr::is_ipv4);
        let v6 = self.resolver_ipv6.parse().ok().filter(std::net::IpAddr::is_ipv6);
        (v4, v6)
    }
}

fn default_dns_ttl() -> u32 {
    5
}
fn default_resolv_conf() -> String {
    "/etc/resolv.conf".into()
}
fn default_resolver_ipv4() -> String {
    "169.254.20.10".into()
}
fn default_resolver_ipv6() -> String {
    "fd00:53::10".into()
}
fn default_dns_cache() -> usize {
    10_000
}

/// `[cluster]`: the etcd the nodes share (as Calico and Flannel in their etcd modes), the
/// range pod CIDRs are leased from, and the node lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://127.0.0.1:2379`); `podswitchd --etcd` overrides them.
    #[serde(default)]
    pub etcd: Vec<String>,
    /// The key prefix of this cluster in etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Seconds a node's registration lives without keep-alive (its lease TTL): a stopped
    /// node disappears from the others within this time.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_s: i64,
    /// The ranges node pod CIDRs are leased from (kube-controller-manager's
    /// `--cluster-cidr`), one per family. A node with `node.pod_cidrs` set uses those instead.
    #[serde(default = "default_cluster_cidrs")]
    pub cluster_cidrs: Vec<String>,
    /// Prefix length of each node's IPv4 block (`--node-cidr-mask-size-ipv4`).
    #[serde(default = "default_mask_v4")]
    pub node_cidr_mask_v4: u8,
    /// Prefix length of each node's IPv6 block (`--node-cidr-mask-size-ipv6`).
    #[serde(default = "default_mask_v6")]
    pub node_cidr_mask_v6: u8,
    /// Set by the daemon, not the file: the registered nodes that announce LoadBalancer
    /// addresses (empty until the node map is known).
    #[serde(skip)]
    pub speakers: Vec<String>,
}

fn default_prefix() -> String {
    "/podswitch".into()
}
fn default_lease_ttl() -> i64 {
    10
}
fn default_cluster_cidrs() -> Vec<String> {
    vec!["10.244.0.0/16".into(), "fd00:244::/56".into()]
}
fn default_mask_v4() -> u8 {
    24
}
fn default_mask_v6() -> u8 {
    64
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            etcd: Vec::new(),
            prefix: default_prefix(),
            lease_ttl_s: default_lease_ttl(),
            cluster_cidrs: default_cluster_cidrs(),
            node_cidr_mask_v4: default_mask_v4(),
            node_cidr_mask_v6: default_mask_v6(),
            speakers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
    pub router_mac: String,
    pub uplink_mac: String,
    pub host_mac: Option<String>,
    pub vtep_mac: Option<String>,
    #[serde(default = "default_tunnel")]
    pub tunnel: String,
    #[serde(default = "default_vni")]
    pub vni: u32,
    #[serde(default = "default_mtu")]
    pub uplink_mtu: u16,
    /// Next hop on the uplink for destinations outside the cluster (adds default routes).
    pub gateway_mac: Option<String>,
    /// Nameservers pods are given (the cluster DNS service's clusterIP), in CNI results.
    #[serde(default)]
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain (kubelet's `clusterDomain`), for pods' search list.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
}

fn default_cluster_domain() -> String {
    "cluster.local".into()
}

fn default_tunnel() -> String {
    "vxlan".into()
}
fn default_vni() -> u32 {
    1
}
fn default_mtu() -> u16 {
    1500
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatapathConfig {
    #[serde(default = "default_maglev")]
    pub maglev_table_size: usize,
    #[serde(default = "default_ct")]
    pub conntrack_flows: usize,
    #[serde(default = "default_workers")]
    pub workers: u16,
    #[serde(default = "default_nodeport_range")]
    pub nodeport_range: String,
    /// The ranges cluster IPs are taken from (the API server's
    /// `--service-cluster-ip-range`, one per family). A cluster IP outside them is refused,
    /// and a packet to an address in them that no Service has is dropped
    /// (`service_no_frontend`), never routed out.
    #[serde(default = "default_service_cidrs")]
    pub service_cidrs: Vec<String>,
    /// Addresses for LoadBalancer Services (CIDRs, or ranges `first-last`), written to their
    /// `status.loadBalancer.ingress` by the allocator (as MetalLB's address pools or Cilium's
    /// LB IPAM). Empty: LoadBalancer addresses are managed elsewhere and a manifest's status
    /// is kept as given.
    #[serde(default)]
    pub load_balancer_pools: Vec<String>,
    #[serde(default)]
    pub verify_l4_checksum: bool,
    #[serde(default = "default_seed")]
    pub hash_seed: u64,
    #[serde(default = "default_max_ports")]
    pub max_ports: usize,
    /// What a NetworkPolicy denial does: `drop` (silently, as most CNIs) or `reject` (a TCP
    /// reset or ICMP administratively prohibited back to the sender, so clients fail fast).
    #[serde(default = "default_policy_denied")]
    pub policy_denied: String,
}

fn default_policy_denied() -> String {
    "drop".into()
}

fn default_maglev() -> usize {
    switch_core::service::DEFAULT_TABLE_SIZE
}
fn default_ct() -> usize {
    1 << 18
}
fn default_workers() -> u16 {
    1
}
/// kubeadm's IPv4 default, and the IPv6 range of this project's examples.
fn default_service_cidrs() -> Vec<String> {
    vec!["10.96.0.0/12".into(), "fd00:96::/108".into()]
}

fn default_nodeport_range() -> String {
    "30000-32767".into()
}
fn default_seed() -> u64 {
    0x7073_7769_7463_6800
}
fn default_max_ports() -> usize {
    256
}

impl Default for DatapathConfig {
    fn default() -> Self {
        DatapathConfig {
            maglev_table_size: default_maglev(),
            conntrack_flows: default_ct(),
            workers: default_workers(),
            nodeport_range: default_nodeport_range(),
            verify_l4_checksum: false,
            hash_seed: default_seed(),
            service_cidrs: default_service_cidrs(),
            load_balancer_pools: Vec::new(),
            max_ports: default_max_ports(),
            policy_denied: default_policy_denied(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// The port id (counters, traces, `conntrack list`); by default its position in the
    /// list. Ports attached at run time carry the id they were given, which they keep for as
    /// long as they live. Below `datapath.max_ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    /// `pod`, `uplink` or `host`.
    pub kind: String,
    /// `pcap` (issue 2); `afxdp`, `afpacket` and `auto` come with the live backends.
    #[serde(default = "default_backend")]
    pub backend: String,
    pub pcap_in: Option<String>,
    pub pcap_out: Option<String>,
    pub interface: Option<String>,
}

fn default_backend() -> String {
    "pcap".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteNodeConfig {
    pub name: String,
    pub ip: String,
    /// The node's MAC on the underlay (next hop for its tunnel packets). Empty (the
    /// default): learned from its ARP on the uplink, which the daemon asks for.
    #[serde(default)]
    pub mac: String,
    /// Its tunnel endpoint MAC (inner destination MAC); defaults to `mac`.
    pub vtep_mac: Option<String>,
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
    /// Registered in the cluster store (a podswitch node that may announce LoadBalancer
    /// addresses), not written in the file.
    #[serde(skip)]
    pub registered: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    /// `uplink`, `host`, `blackhole`, `local`, or `node:<name>`.
    pub via: String,
    /// Next-hop MAC for `uplink`.
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "TCP".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodConfig {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The switch port of a pod on this node; absent for pods on other nodes.
    pub port: Option<String>,
    /// The node a remote pod runs on.
    pub node: Option<String>,
    pub mac: Option<String>,
    pub ips: Vec<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub container_ports: Vec<ContainerPort>,
    /// The pod's Ready condition: endpoints derived from a service selector are ready only when
    /// their pod is.
    #[serde(default = "yes")]
    pub ready: bool,
    /// `spec.hostname` and `spec.subdomain`: with a headless Service named like the
    /// subdomain, the pod is `<hostname>.<subdomain>.<namespace>.svc.<zone>` in DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// `spec.dnsPolicy` (ClusterFirst when absent) and `spec.dnsConfig`: what the CNI result
    /// gives the pod as its resolver configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<PodDnsConfig>,
}

/// `spec.dnsConfig` of a Pod (Kubernetes `PodDNSConfig`): nameservers and search domains
/// added to (with dnsPolicy None: instead of) the generated ones, options (`name` or
/// `name:value`) overriding them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodDnsConfig {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

fn default_namespace() -> String {
    "default".into()
}

/// A port number or a named port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePortConfig {
    pub name: Option<String>,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub port: u16,
    pub target_port: Option<PortRef>,
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The pod behind the endpoint (resolves named target ports, locality and the address).
    pub pod: Option<String>,
    pub ip: Option<String>,
    /// Node of the endpoint; defaults to the pod's.
    pub node: Option<String>,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default = "yes")]
    pub serving: bool,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default = "one")]
    pub weight: u16,
    /// Target port by service port name ("" for an unnamed port), as an EndpointSlice gives
    /// it; overrides the service's target_port for this endpoint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    /// The endpoint serves only the ports `ports` lists (an EndpointSlice or an Endpoints
    /// subset says which ports its endpoints serve: `discovery.k8s.io/v1` EndpointSlice
    /// `ports`); otherwise a service port it does not list goes to the service's target port.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub listed_ports_only: bool,
    /// The endpoint's DNS hostname (EndpointSlice `endpoints[].hostname`): a headless
    /// Service's per-endpoint name `<hostname>.<service>.<namespace>.svc.<zone>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

fn yes() -> bool {
    true
}
fn one() -> u16 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(rename = "type", default = "default_service_type")]
    pub service_type: String,
    /// Empty or `["None"]` for a headless service.
    #[serde(default)]
    pub cluster_ips: Vec<String>,
    #[serde(default)]
    pub external_ips: Vec<String>,
    #[serde(default)]
    pub load_balancer_ips: Vec<String>,
    #[serde(default)]
    pub load_balancer_source_ranges: Vec<String>,
    #[serde(default = "default_affinity")]
    pub session_affinity: String,
    pub affinity_timeout_seconds: Option<u32>,
    #[serde(default = "default_policy")]
    pub external_traffic_policy: String,
    #[serde(default = "default_policy")]
    pub internal_traffic_policy: String,
    pub external_name: Option<String>,
    #[serde(default)]
    pub ports: Vec<ServicePortConfig>,
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// Pods of the service's namespace with these labels are its endpoints when `endpoints`
    /// is empty (what the EndpointSlice controller does); ignored when endpoints are given.
    pub selector: Option<Labels>,
    /// The Service's own labels (`metadata.labels`). A Service labelled
    /// `service.kubernetes.io/service-proxy-name` (another proxy's) or
    /// `service.kubernetes.io/headless` is stored but not programmed, as kube-proxy does.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// `spec.healthCheckNodePort` (LoadBalancer with `externalTrafficPolicy: Local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<u16>,
    /// `spec.allocateLoadBalancerNodePorts`: false lets a LoadBalancer's ports go without
    /// node ports.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub allocate_load_balancer_node_ports: bool,
    /// `spec.loadBalancerClass`: a class other than `podswitch.io/l2` belongs to another
    /// controller, whose addresses podswitch forwards but neither allocates nor announces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// `spec.publishNotReadyAddresses`: DNS lists a headless Service's endpoints whether
    /// they are ready or not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_not_ready_addresses: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Labels that keep kube-proxy (and podswitch) away from a Service
/// (`k8s.io/kubernetes/pkg/proxy/apis`).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

impl ServiceConfig {
    /// Whether another proxy owns this Service (it is kept but not programmed).
    pub fn proxied_elsewhere(&self) -> bool {
        self.labels.contains_key(SERVICE_PROXY_NAME_LABEL) || self.labels.contains_key(HEADLESS_LABEL)
    }
}

fn default_service_type() -> String {
    "ClusterIP".into()
}
fn default_affinity() -> String {
    "None".into()
}
fn default_policy() -> String {
    "Cluster".into()
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct SelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    #[serde(default)]
    pub except: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub ip_block: Option<IpBlock>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPortConfig {
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub port: Option<PortRef>,
    pub end_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRuleConfig {
    #[serde(default)]
    pub from: Vec<PeerConfig>,
    #[serde(default)]
    pub ports: Vec<PolicyPortConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRuleConfig {
    #[serde(default)]
    pub to: Vec<PeerConfig>,
    #[serde(default)]
    pub ports: Vec<PolicyPortConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// `Ingress`, `Egress`; defaulted as Kubernetes does when absent.
    pub policy_types: Option<Vec<String>>,
    #[serde(default)]
    pub ingress: Vec<IngressRuleConfig>,
    #[serde(default)]
    pub egress: Vec<EgressRuleConfig>,
}

/// A Kubernetes `v1` ConfigMap: string data read by podswitch's own features (the cluster
/// DNS reads `kube-system/kube-dns`: `stubDomains`, `upstreamNameservers` and `hosts`). It
/// builds no table; a change of one is published as a new generation all the same, so that
/// what reads it sees the change without a restart. Applied as YAML or JSON only (the config
/// file has no ConfigMaps); `binaryData` is ignored with a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapConfig {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// `data`: keys (`[-._a-zA-Z0-9]+`, at most 253 characters) to UTF-8 values, at most
    /// [`CONFIG_MAP_MAX_BYTES`] of values in all.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// The most bytes a ConfigMap's values may hold together, as the API server allows
/// (`MaxSecretSize`, 1 MiB).
pub const CONFIG_MAP_MAX_BYTES: usize = 1 << 20;
