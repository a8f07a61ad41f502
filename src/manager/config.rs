//! How to run a manager: [`ManagerConfig`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::types::ClusterSpec;
use swarm_core::{Clock, SystemClock};
use swarm_runtime::Runtime;

use crate::agent::mesh::RoutingMeshConfig;
use crate::agent::netplane::{KernelOverlay, OverlayFactory};
use crate::manager::control::NetworkConfig;
use crate::manager::leader::SchedulerFactory;

/// How to run a manager: where it keeps its state and listens, and what it
/// runs with (runtime, scheduler, clock, routing mesh, settings of a new swarm).
///
/// ```
/// use std::time::Duration;
/// use swarm::ManagerConfig;
///
/// let cfg = ManagerConfig::new("/var/lib/app/m1", "0.0.0.0:2377")
///     .advertise_addr("192.0.2.1:2377")
///     .hostname("manager-1")
///     .tick_interval(Duration::from_millis(100));
/// assert_eq!(cfg.advertise_addr.as_deref(), Some("192.0.2.1:2377"));
/// ```
#[derive(Clone)]
pub struct ManagerConfig {
    /// Where the node keeps its identity, raft log and task state.
    pub data_dir: PathBuf,
    /// Where the cluster port listens (`host:port`; port 0 picks one).
    pub listen_addr: String,
    /// The address other nodes reach this one on (default: the bound address).
    pub advertise_addr: Option<String>,
    /// The host name the node reports.
    pub hostname: String,
    /// The runtime the manager's own agent runs tasks with (`None`: it runs none).
    pub runtime: Option<Arc<dyn Runtime>>,
    /// The scheduler the leader runs (default: SwarmKit's spread).
    pub scheduler: SchedulerFactory,
    /// Settings of a new swarm (`init`).
    pub cluster_spec: ClusterSpec,
    /// Raft tick interval (default 100 ms: a lost leader is replaced in ~1–2 s).
    pub tick_interval: Duration,
    /// The node's routing mesh (`None`, the default: published ports are not
    /// answered on this node; swarmd turns it on).
    pub routing_mesh: Option<RoutingMeshConfig>,
    /// Address pools, subnet size and data-path port of a new swarm (`init`).
    pub network: NetworkConfig,
    /// How often this manager, while it leads, rotates the encryption keys of
    /// encrypted overlay networks (default 12 hours, as Docker).
    pub network_key_rotation: Duration,
    /// The clock of the manager's store, its leader loops and its agent
    /// (default: the system's); a simulation gives its own.
    pub clock: Arc<dyn Clock>,
    /// What starts the node's overlay networks (default: the kernel's VXLAN,
    /// [`KernelOverlay`]); a host plugs its own [`swarm_net::overlay::OverlayDriver`]
    /// in here.
    pub overlay: Arc<dyn OverlayFactory>,
}

impl std::fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("data_dir", &self.data_dir)
            .field("listen_addr", &self.listen_addr)
            .field("advertise_addr", &self.advertise_addr)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl ManagerConfig {
    /// A manager keeping its state in `data_dir` and listening on `listen_addr`,
    /// with the default scheduler, no runtime, and SwarmKit's default settings.
    pub fn new(data_dir: impl Into<PathBuf>, listen_addr: impl Into<String>) -> ManagerConfig {
        ManagerConfig {
            data_dir: data_dir.into(),
            listen_addr: listen_addr.into(),
            advertise_addr: None,
            hostname: crate::state::hostname(),
            runtime: None,
            scheduler: Arc::new(|| {
                Box::new(swarm_sched::SpreadScheduler) as Box<dyn swarm_sched::Scheduler>
            }),
            cluster_spec: ClusterSpec::default(),
            tick_interval: Duration::from_millis(100),
            routing_mesh: None,
            network: NetworkConfig::default(),
            network_key_rotation: crate::manager::keymanager::DEFAULT_KEY_ROTATION,
            clock: Arc::new(SystemClock),
            overlay: Arc::new(KernelOverlay),
        }
    }

    /// Sets how often the leader rotates the overlay encryption keys.
    pub fn network_key_rotation(mut self, every: Duration) -> Self {
        self.network_key_rotation = every;
        self
    }

    /// Answers published ports on this node through a routing mesh.
    pub fn routing_mesh(mut self, mesh: RoutingMeshConfig) -> Self {
        self.routing_mesh = Some(mesh);
        self
    }

    /// Sets the advertised address.
    pub fn advertise_addr(mut self, addr: impl Into<String>) -> Self {
        self.advertise_addr = Some(addr.into());
        self
    }

    /// Sets the host name.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// Runs tasks on this manager with `runtime`.
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Uses another scheduler.
    pub fn scheduler(mut self, factory: SchedulerFactory) -> Self {
        self.scheduler = factory;
        self
    }

    /// Settings for a new swarm.
    pub fn cluster_spec(mut self, spec: ClusterSpec) -> Self {
        self.cluster_spec = spec;
        self
    }

    /// Network settings for a new swarm (address pools, subnet size,
    /// data-path port).
    pub fn network(mut self, network: NetworkConfig) -> Self {
        self.network = network;
        self
    }

    /// Raft tick interval.
    pub fn tick_interval(mut self, tick: Duration) -> Self {
        self.tick_interval = tick;
        self
    }

    /// Takes time from `clock` (store timestamps, restart delays, update
    /// monitors, task status times) instead of the system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs the node's overlay networks on what `overlay` starts.
    pub fn overlay(mut self, overlay: Arc<dyn OverlayFactory>) -> Self {
        self.overlay = overlay;
        self
    }
}
