//! The cluster object: swarm-wide settings, join tokens and the root CA.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::{Annotations, Driver, Meta};
use crate::id::Id;

/// The name of the one cluster object, as in SwarmKit.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

/// Orchestration settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestrationConfig {
    /// Terminated tasks kept per slot (per node for global services). Default 5.
    pub task_history_retention_limit: i64,
}

impl Default for OrchestrationConfig {
    fn default() -> Self {
        OrchestrationConfig {
            task_history_retention_limit: 5,
        }
    }
}

/// Raft settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfig {
    /// Log entries between snapshots. Default 10000.
    pub snapshot_interval: u64,
    /// Old snapshots kept besides the newest. Default 0.
    pub keep_old_snapshots: u64,
    /// Entries kept behind a snapshot for slow followers. Default 500.
    pub log_entries_for_slow_followers: u64,
    /// Ticks between leader heartbeats. Default 1.
    pub heartbeat_tick: u32,
    /// Ticks without a heartbeat before a follower calls an election. Default 10.
    pub election_tick: u32,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            snapshot_interval: 10_000,
            keep_old_snapshots: 0,
            log_entries_for_slow_followers: 500,
            heartbeat_tick: 1,
            election_tick: 10,
        }
    }
}

/// Dispatcher settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherConfig {
    /// How often workers send heartbeats. Default 5 s.
    pub heartbeat_period: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            heartbeat_period: Duration::from_secs(5),
        }
    }
}

/// An external certificate authority.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalCa {
    /// Protocol, e.g. `cfssl`.
    pub protocol: String,
    /// Where to reach it.
    pub url: String,
    /// Its CA certificate, PEM.
    pub ca_cert: Vec<u8>,
}

/// CA settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaConfig {
    /// Lifetime of node certificates. Default 90 days (2160h).
    pub node_cert_expiry: Duration,
    /// External CAs to sign with instead of the internal one.
    pub external_cas: Vec<ExternalCa>,
    /// A CA certificate to switch to (root rotation), PEM.
    pub signing_ca_cert: Vec<u8>,
    /// Its key, PEM.
    pub signing_ca_key: Vec<u8>,
    /// Bumped to force a root rotation.
    pub force_rotate: u64,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            node_cert_expiry: Duration::from_secs(2160 * 3600),
            external_cas: Vec::new(),
            signing_ca_cert: Vec::new(),
            signing_ca_key: Vec::new(),
            force_rotate: 0,
        }
    }
}

/// Defaults applied to tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefaults {
    /// Log driver for tasks that set none.
    pub log_driver: Option<Driver>,
}

/// Encryption settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionConfig {
    /// Whether managers need an unlock key after a restart (autolock).
    pub auto_lock_managers: bool,
}

/// The swarm-wide settings the user can change (`docker swarm update`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Name (`default`) and labels.
    pub annotations: Annotations,
    /// Orchestration settings.
    pub orchestration: OrchestrationConfig,
    /// Raft settings.
    pub raft: RaftConfig,
    /// Dispatcher settings.
    pub dispatcher: DispatcherConfig,
    /// CA settings.
    pub ca_config: CaConfig,
    /// Task defaults.
    pub task_defaults: TaskDefaults,
    /// Encryption settings.
    pub encryption_config: EncryptionConfig,
}

/// The two join tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokens {
    /// Token that makes the joining node a worker: `SWMTKN-1-<CA digest>-<secret>`.
    pub worker: String,
    /// Token that makes the joining node a manager.
    pub manager: String,
}

/// A root CA rotation in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotation {
    /// The new CA certificate, PEM.
    pub ca_cert: Vec<u8>,
    /// Its key, PEM.
    pub ca_key: Vec<u8>,
    /// The new root cross-signed by the old one, PEM.
    pub cross_signed_ca_cert: Vec<u8>,
}

/// The cluster's root of trust.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCa {
    /// The CA key, PEM (empty when an external CA signs).
    pub ca_key: Vec<u8>,
    /// The CA certificate, PEM.
    pub ca_cert: Vec<u8>,
    /// Digest of the CA certificate, as in the join tokens (`sha256:<hex>`).
    pub ca_cert_hash: String,
    /// The current join tokens.
    pub join_tokens: JoinTokens,
    /// A rotation in progress.
    pub root_rotation: Option<RootRotation>,
    /// Bumped on each completed rotation.
    pub last_forced_rotation: u64,
}

/// A key managers use, with the lamport time it was made at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKey {
    /// What the key is for, e.g. `networking:gossip`.
    pub subsystem: String,
    /// Algorithm name.
    pub algorithm: String,
    /// The key.
    pub key: Vec<u8>,
    /// Lamport time it was made at.
    pub lamport_time: u64,
}

/// A certificate that is refused from now on (its node was removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlacklistedCertificate {
    /// The node ID the certificate names.
    pub node_id: Id,
    /// When the certificate expires (after which the entry can go).
    pub expiry: crate::time::Timestamp,
}

/// The swarm itself: one object named `default`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// The cluster ID (also the O of every node certificate).
    pub id: Id,
    /// Version and times.
    pub meta: Meta,
    /// Settings.
    pub spec: ClusterSpec,
    /// Root CA and join tokens.
    pub root_ca: RootCa,
    /// Keys for overlay networking.
    pub network_bootstrap_keys: Vec<EncryptionKey>,
    /// Lamport clock for those keys.
    pub encryption_key_lamport_clock: u64,
    /// Certificates of removed nodes.
    pub blacklisted_certificates: Vec<BlacklistedCertificate>,
    /// Keys that unlock managers under autolock.
    pub unlock_keys: Vec<EncryptionKey>,
    /// Address pools overlay subnets come from (default `10.0.0.0/8`).
    pub default_address_pool: Vec<String>,
    /// Prefix length of each subnet taken from the pools (default 24).
    pub subnet_size: u32,
    /// The VXLAN data-path port (default 4789).
    pub vxlan_udp_port: u32,
    /// The store version at which `spec` last changed, kept by the store: a
    /// settings update read at this version or later loses nothing, whatever
    /// the swarm wrote since (join tokens, keys, removed nodes' certificates).
    #[serde(default)]
    pub spec_index: u64,
}
