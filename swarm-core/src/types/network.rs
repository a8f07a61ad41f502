//! Networks.

use serde::{Deserialize, Serialize};

use super::common::{Annotations, Driver, Meta};
use crate::id::Id;

/// IP version of an IPAM config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressFamily {
    /// Both.
    #[default]
    Unknown,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// One subnet of a network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConfig {
    /// IP version.
    pub family: AddressFamily,
    /// Subnet in CIDR form, e.g. `10.0.0.0/24`.
    pub subnet: String,
    /// Sub-range addresses are handed out from, CIDR.
    pub range: String,
    /// Gateway address.
    pub gateway: String,
    /// Addresses kept out of allocation, by name.
    pub reserved: std::collections::BTreeMap<String, String>,
}

/// IPAM driver and subnets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamOptions {
    /// IPAM driver (`default`).
    pub driver: Driver,
    /// Subnets.
    pub configs: Vec<IpamConfig>,
}

/// What the user gives for a network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Name (unique) and labels.
    pub annotations: Annotations,
    /// Network driver, e.g. `overlay`.
    pub driver_config: Driver,
    /// Whether IPv6 is on.
    pub ipv6_enabled: bool,
    /// No external connectivity.
    pub internal: bool,
    /// Requested IPAM (subnets the user picked).
    pub ipam: Option<IpamOptions>,
    /// Standalone containers may attach.
    pub attachable: bool,
    /// This is the routing-mesh network.
    pub ingress: bool,
    /// Name of a config-only network this one copies.
    pub config_from: String,
}

/// A network tasks attach to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The network ID.
    pub id: Id,
    /// Version and times.
    pub meta: Meta,
    /// What the user gave.
    pub spec: NetworkSpec,
    /// Driver state after allocation (e.g. the VXLAN ID).
    pub driver_state: Option<Driver>,
    /// IPAM after allocation (the subnets actually used).
    pub ipam: Option<IpamOptions>,
    /// Removal requested; waits for attachments to go.
    pub pending_delete: bool,
}
