//! Nodes: the machines of the swarm.

use serde::{Deserialize, Serialize};

use super::common::{Annotations, Meta, Platform, Resources};
use crate::id::Id;

/// A role in the swarm.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Runs tasks only.
    #[default]
    Worker,
    /// Takes part in raft and serves the control API (and runs tasks unless drained).
    Manager,
}

/// Whether a node accepts tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// Takes new tasks.
    #[default]
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Its tasks are shut down and placed elsewhere; takes no new ones.
    Drain,
}

/// Whether a node has been admitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// Waiting for admission.
    Pending,
    /// Admitted.
    #[default]
    Accepted,
}

/// What the user can set on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Name (usually empty: the CLI shows the hostname) and labels used by
    /// placement constraints (`node.labels.KEY`).
    pub annotations: Annotations,
    /// The role the node should have; promotion and demotion change this.
    pub desired_role: NodeRole,
    /// Admission state.
    pub membership: Membership,
    /// Whether the node takes tasks.
    pub availability: Availability,
}

/// A plugin the engine offers, e.g. `{type: "Network", name: "overlay"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PluginDescription {
    /// Plugin type: `Volume`, `Network`, `Log`.
    pub r#type: String,
    /// Plugin name.
    pub name: String,
}

/// The container engine on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineDescription {
    /// Engine version string, as `docker node inspect` shows it.
    pub engine_version: String,
    /// Engine labels (`engine.labels.KEY` in constraints).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Plugins the engine offers.
    pub plugins: Vec<PluginDescription>,
}

/// What a node reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    /// Host name.
    pub hostname: String,
    /// OS and architecture.
    pub platform: Platform,
    /// Total resources.
    pub resources: Resources,
    /// The engine.
    pub engine: EngineDescription,
    /// The node's TLS information (trust root and certificate issuer), PEM.
    pub tls_root_ca: Vec<u8>,
    /// Where the node's routing mesh takes over connections for the tasks it
    /// runs (`ip:port`); empty when the node runs no routing mesh.
    pub mesh_addr: String,
}

/// Observed health of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Not known yet.
    #[default]
    Unknown,
    /// Missed its heartbeats or left.
    Down,
    /// Connected and healthy.
    Ready,
    /// Lost its session, within the grace period.
    Disconnected,
}

/// The node's state as the dispatcher sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Health.
    pub state: NodeState,
    /// Human-readable detail, e.g. `heartbeat failure`.
    pub message: String,
    /// The address the node connects from.
    pub addr: String,
}

/// How reachable a manager is from the leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// Not known yet.
    #[default]
    Unknown,
    /// Not answering.
    Unreachable,
    /// Answering.
    Reachable,
}

/// Raft membership of a manager node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    /// The member's raft ID.
    pub raft_id: u64,
    /// The address other managers reach it on (`host:2377`).
    pub addr: String,
    /// Whether it is the raft leader.
    pub leader: bool,
    /// How reachable it is.
    pub reachability: Reachability,
}

/// Where a node's certificate stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuanceState {
    /// Nothing requested.
    #[default]
    Unknown,
    /// Renewal requested.
    Renew,
    /// Waiting for the CA.
    Pending,
    /// Issued.
    Issued,
    /// Issuance failed.
    Failed,
    /// Being rotated to a new root.
    Rotate,
}

/// A node's TLS certificate as the CA tracks it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// Role the certificate grants.
    pub role: NodeRole,
    /// The certificate signing request, PEM.
    pub csr: Vec<u8>,
    /// Issuance state.
    pub status: IssuanceState,
    /// Human-readable detail of `status`.
    pub status_message: String,
    /// The issued certificate, PEM.
    pub certificate: Vec<u8>,
    /// Common name: the node ID.
    pub cn: String,
}

/// A machine of the swarm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node ID (also its certificate's CN).
    pub id: Id,
    /// Version and times.
    pub meta: Meta,
    /// What the user set.
    pub spec: NodeSpec,
    /// What the node reported, once it connected.
    pub description: Option<NodeDescription>,
    /// Health as the dispatcher sees it.
    pub status: NodeStatus,
    /// Raft membership, for managers.
    pub manager_status: Option<ManagerStatus>,
    /// The role the node has now (follows `spec.desired_role`).
    pub role: NodeRole,
    /// Its certificate.
    pub certificate: NodeCertificate,
    /// The store version at which `spec` last changed (kept by the store): a
    /// spec update read at this version or later loses nothing, whatever the
    /// swarm wrote into the node's status since.
    #[serde(default)]
    pub spec_version: u64,
}

impl Node {
    /// The name the CLI shows: the spec name if set, else the hostname.
    pub fn name(&self) -> &str {
        if !self.spec.annotations.name.is_empty() {
            &self.spec.annotations.name
        } else {
            self.description
                .as_ref()
                .map(|d| d.hostname.as_str())
                .unwrap_or("")
        }
    }
}
