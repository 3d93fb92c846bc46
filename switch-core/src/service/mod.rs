//! Services: frontends (ClusterIP, NodePort, LoadBalancer and external IPs, by address, port
//! and protocol) to weighted backends chosen by Maglev consistent hashing, with ClientIP
//! session affinity and Kubernetes' rules for terminating endpoints and traffic policies.

mod affinity;
mod maglev;
pub(crate) mod reject;
pub(crate) mod stage;
mod steering;
mod table;

pub use affinity::{AffinityEntry, AffinityImage, AffinityKey, AffinityTable};
pub use maglev::{table_size_for, Maglev, MaglevCache, MaglevInput, DEFAULT_TABLE_SIZE};
pub use stage::Shard;
pub use table::{
    Backend, BackendState, Frontend, FrontendClash, FrontendKind, Parts, ServicePort, ServicePortId, ServicePortSpec,
    ServiceTable,
};
