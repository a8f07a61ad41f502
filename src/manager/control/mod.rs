//! The typed control API: what `docker swarm|node|service|task` commands do,
//! over the store. Every write validates first (nothing is written on error) and
//! goes through [`Store::update`], so on a manager whose store has a proposer it
//! is replicated (and forwarded to the leader) before it returns.
//!
//! It may use swarm-core (the store), swarm-sched and swarm-net (to check
//! constraints and address pools), the facade's `error` and `pki` (the root CA
//! behind tokens), and of the manager's rooms the orchestrator (the plan that
//! removes a service's tasks, job progress) and the allocator (its checks, so a
//! conflict is refused before anything is written).

mod nodes;
mod objects;
mod services;
mod validate;

use std::sync::Arc;

pub use nodes::NodeFilter;
pub use services::{ServiceFilter, TaskFilter};

use swarm_core::types::{
    Annotations, Cluster, ClusterSpec, DEFAULT_CLUSTER_NAME, JoinTokens, Network, NetworkSpec,
    RootCa as RootCaObject,
};
use swarm_core::{Id, Store, StoreObject, Tables};

use crate::error::{Error, Result};
use crate::pki::RootCa;

/// The control API of one manager: what `docker service|node|network|secret|
/// config|swarm` commands do, typed. Writes go through the store's consensus
/// (any manager forwards to the leader); reads answer from this manager's store.
/// Get it from [`Manager::control`](crate::Manager::control) or
/// [`Node::control`](crate::Node::control); see the crate docs for an example
/// over a bare store.
#[derive(Clone, Debug)]
pub struct Control {
    store: Store,
}

/// The network settings of a new swarm: where overlay subnets come from and
/// the VXLAN port (`docker swarm init --default-addr-pool
/// --default-addr-pool-mask-length --data-path-port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Pools overlay subnets are cut from, CIDR (default `10.0.0.0/8`).
    pub default_addr_pool: Vec<String>,
    /// Prefix length of each subnet cut from them (default 24).
    pub subnet_size: u32,
    /// The VXLAN data-path port, 1024–49151 (default 4789; 0 means 4789).
    pub data_path_port: u32,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            default_addr_pool: vec!["10.0.0.0/8".into()],
            subnet_size: 24,
            data_path_port: 4789,
        }
    }
}

impl NetworkConfig {
    /// The settings with defaults filled in (no pool: 10.0.0.0/8; size 0: 24;
    /// port 0: 4789), or `InvalidArgument` naming what is wrong.
    pub fn checked(&self) -> Result<NetworkConfig> {
        let mut c = self.clone();
        if c.default_addr_pool.is_empty() {
            c.default_addr_pool = NetworkConfig::default().default_addr_pool;
        }
        if c.subnet_size == 0 {
            c.subnet_size = 24;
        }
        if c.data_path_port == 0 {
            c.data_path_port = 4789;
        }
        if !(1024..=49151).contains(&c.data_path_port) {
            return Err(Error::InvalidArgument(format!(
                "data path port {} is out of the range 1024-49151",
                c.data_path_port
            )));
        }
        swarm_net::ipam::SubnetPools::new(&c.default_addr_pool, c.subnet_size)
            .map_err(|e| Error::InvalidArgument(format!("default address pool: {e}")))?;
        Ok(c)
    }
}

/// Which join tokens to rotate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotate {
    /// Rotate the worker token.
    pub worker: bool,
    /// Rotate the manager token.
    pub manager: bool,
}

impl Control {
    /// The control API over `store`.
    pub fn new(store: Store) -> Control {
        Control { store }
    }

    /// The store behind the API.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates the cluster object (`docker swarm init`): ID, settings, the root CA
    /// and fresh worker and manager join tokens. Fails if a swarm exists.
    /// The ingress network is created with it, with the default address pools.
    pub async fn init_cluster(&self, spec: ClusterSpec, ca: &RootCa) -> Result<Arc<Cluster>> {
        self.init_cluster_as(Id::generate(), spec, ca).await
    }

    /// [`init_cluster`](Control::init_cluster) with a chosen cluster ID (the one
    /// the first manager's certificate already names).
    pub async fn init_cluster_as(
        &self,
        id: Id,
        spec: ClusterSpec,
        ca: &RootCa,
    ) -> Result<Arc<Cluster>> {
        self.init_cluster_with(id, spec, ca, &NetworkConfig::default())
            .await
    }

    /// [`init_cluster_as`](Control::init_cluster_as) with the swarm's address
    /// pools, subnet size and data-path port (`docker swarm init
    /// --default-addr-pool --default-addr-pool-mask-length --data-path-port`),
    /// checked first. The ingress network (`ingress`, overlay) is created in the
    /// same transaction; the allocator gives it the first subnet of the pools
    /// (10.0.0.0/24 by default).
    pub async fn init_cluster_with(
        &self,
        id: Id,
        mut spec: ClusterSpec,
        ca: &RootCa,
        network: &NetworkConfig,
    ) -> Result<Arc<Cluster>> {
        let network = network.checked()?;
        spec.annotations = Annotations {
            name: DEFAULT_CLUSTER_NAME.into(),
            ..spec.annotations
        };
        let cluster = Cluster {
            id,
            spec,
            root_ca: RootCaObject {
                ca_key: ca.key_pem().unwrap_or_default().as_bytes().to_vec(),
                ca_cert: ca.cert_pem().as_bytes().to_vec(),
                ca_cert_hash: ca.digest_string(),
                join_tokens: JoinTokens {
                    worker: ca.new_join_token(),
                    manager: ca.new_join_token(),
                },
                ..Default::default()
            },
            default_address_pool: network.default_addr_pool.clone(),
            subnet_size: network.subnet_size,
            vxlan_udp_port: network.data_path_port,
            ..Default::default()
        };
        let ingress = Network {
            spec: NetworkSpec {
                annotations: Annotations {
                    name: "ingress".into(),
                    labels: [("com.docker.swarm.internal".to_string(), "true".to_string())].into(),
                },
                driver_config: swarm_core::types::Driver {
                    name: "overlay".into(),
                    options: Default::default(),
                },
                ingress: true,
                ..Default::default()
            },
            ..Default::default()
        };
        self.store
            .update(|tx| {
                if tx.cluster().is_some() {
                    return Err(swarm_core::Error::InvalidArgument(
                        "this node is already part of a swarm".into(),
                    ));
                }
                let c = tx.create(cluster)?;
                if !tx.list::<Network>().any(|n| n.spec.ingress) {
                    tx.create(ingress)?;
                }
                Ok(c)
            })
            .await
            .map_err(|e| match e {
                swarm_core::Error::InvalidArgument(m) => Error::FailedPrecondition(m),
                e => e.into(),
            })
    }

    /// The cluster object, or `FailedPrecondition` before `init_cluster`.
    pub fn cluster(&self) -> Result<Arc<Cluster>> {
        self.store.view().cluster().ok_or_else(not_in_swarm)
    }

    /// The current join tokens.
    pub fn join_tokens(&self) -> Result<JoinTokens> {
        Ok(self.cluster()?.root_ca.join_tokens.clone())
    }

    /// Replaces the chosen join tokens by fresh ones; the old ones are refused
    /// from then on. Returns the tokens now in force.
    pub async fn rotate_join_tokens(&self, which: Rotate, ca: &RootCa) -> Result<JoinTokens> {
        let updated = self
            .store
            .update_retrying(|tx| {
                let mut c = (*existing_cluster(tx)?).clone();
                if which.worker {
                    c.root_ca.join_tokens.worker = ca.new_join_token();
                }
                if which.manager {
                    c.root_ca.join_tokens.manager = ca.new_join_token();
                }
                tx.update(c)
            })
            .await?;
        Ok(updated.root_ca.join_tokens.clone())
    }

    /// Replaces the cluster settings (`docker swarm update`). `version` is the
    /// cluster version the caller read: the settings apply when they have not
    /// changed since (token rotations and the swarm's own writes do not
    /// matter), else it is a `Conflict`. Unchanged settings write nothing.
    pub async fn update_cluster(&self, version: u64, spec: ClusterSpec) -> Result<Arc<Cluster>> {
        if spec.raft.election_tick <= spec.raft.heartbeat_tick {
            return Err(Error::InvalidArgument(format!(
                "Raft: ElectionTick ({}) must be greater than HeartbeatTick ({})",
                spec.raft.election_tick, spec.raft.heartbeat_tick
            )));
        }
        if spec.dispatcher.heartbeat_period.is_zero() {
            return Err(Error::InvalidArgument(
                "Dispatcher: HeartbeatPeriod must be positive".into(),
            ));
        }
        if spec.orchestration.task_history_retention_limit < 0 {
            return Err(Error::InvalidArgument(
                "Orchestration: TaskHistoryRetentionLimit must not be negative".into(),
            ));
        }
        // Read at or after the last settings change: what the swarm wrote into
        // the cluster since (rotated tokens, keys, removed certificates) is
        // kept, not refused. A settings change since the read is out of sequence.
        let current = self.cluster()?;
        current.check_spec_read(version)?;
        let spec = ClusterSpec {
            annotations: current.spec.annotations.clone(),
            ..spec
        };
        if spec == current.spec {
            return Ok(current);
        }
        Ok(self
            .store
            .update_retrying(|tx| {
                let current = existing_cluster(tx)?;
                current.check_spec_read(version)?;
                let mut c = (*current).clone();
                c.spec = spec.clone();
                tx.update(c)
            })
            .await?)
    }
}

/// The object of kind `T` with ID `id`, or `NotFound`: for a write that
/// looked it up before its transaction and finds it again inside.
pub(crate) fn existing<T: StoreObject>(tables: &Tables, id: &Id) -> swarm_core::Result<Arc<T>> {
    tables
        .get::<T>(id)
        .ok_or_else(|| swarm_core::Error::NotFound {
            kind: T::KIND,
            id: id.to_string(),
        })
}

/// The cluster object, or `NotFound` (inside a transaction).
fn existing_cluster(tables: &Tables) -> swarm_core::Result<Arc<Cluster>> {
    tables.cluster().ok_or_else(|| swarm_core::Error::NotFound {
        kind: swarm_core::Kind::Cluster,
        id: DEFAULT_CLUSTER_NAME.into(),
    })
}

fn not_in_swarm() -> Error {
    Error::FailedPrecondition(
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."
            .into(),
    )
}

#[cfg(test)]
mod tests;

/// What `docker info` shows in its Swarm block.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmInfo {
    /// This node's ID.
    pub node_id: Id,
    /// This node's address.
    pub node_addr: String,
    /// Whether this node is a manager (always, through a manager's API).
    pub control_available: bool,
    /// The cluster ID.
    pub cluster_id: Id,
    /// When the swarm was created.
    pub created_at: swarm_core::Timestamp,
    /// When its settings last changed.
    pub updated_at: swarm_core::Timestamp,
    /// Number of managers.
    pub managers: usize,
    /// Number of nodes.
    pub nodes: usize,
    /// Every manager: node ID and address.
    pub remote_managers: Vec<(Id, String)>,
    /// The swarm settings (task history retention, raft ticks and snapshots,
    /// dispatcher heartbeat, CA expiry, autolock).
    pub spec: ClusterSpec,
    /// Whether a root CA rotation is in progress.
    pub root_rotation_in_progress: bool,
    /// Address pools overlay subnets come from.
    pub default_address_pool: Vec<String>,
    /// Prefix length of those subnets.
    pub subnet_size: u32,
    /// The VXLAN data-path port.
    pub data_path_port: u32,
}

impl Control {
    /// The Swarm block of `docker info`, as seen from node `node_id` at `node_addr`.
    pub fn info(&self, node_id: &Id, node_addr: &str) -> Result<SwarmInfo> {
        let cluster = self.cluster()?;
        let view = self.store.view();
        let mut remote_managers: Vec<(Id, String)> = view
            .list::<swarm_core::types::Node>()
            .filter_map(|n| {
                n.manager_status
                    .as_ref()
                    .map(|m| (n.id.clone(), m.addr.clone()))
            })
            .collect();
        remote_managers.sort();
        Ok(SwarmInfo {
            node_id: node_id.clone(),
            node_addr: node_addr.to_string(),
            control_available: true,
            cluster_id: cluster.id.clone(),
            created_at: cluster.meta.created_at,
            updated_at: cluster.meta.updated_at,
            managers: remote_managers.len(),
            nodes: view.count::<swarm_core::types::Node>(),
            remote_managers,
            spec: cluster.spec.clone(),
            root_rotation_in_progress: cluster.root_ca.root_rotation.is_some(),
            default_address_pool: cluster.default_address_pool.clone(),
            subnet_size: cluster.subnet_size,
            data_path_port: cluster.vxlan_udp_port,
        })
    }
}
