//! A worker node: joins the swarm with a token (once), then keeps a dispatcher
//! session with some manager and runs the tasks assigned to it through its
//! runtime. Restarted with the same data directory it comes back as the same
//! node and adopts the tasks it was running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::types::NodeRole;
use swarm_core::{Clock, Id, SystemClock};
use swarm_runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::netplane::{KernelOverlay, OverlayFactory};
use crate::agent::run::AgentSetup;
use crate::agent::session::ManagerList;
use crate::error::{Error, Result};
use crate::pki::{NodeIdentity, RootCa};
use crate::rpc::ca::join;
use crate::state::{DataDir, NodeFile};

/// How to run a worker: its data directory, and for the first start the
/// manager to join and the token.
///
/// ```
/// use swarm::WorkerConfig;
///
/// let cfg = WorkerConfig::new("/var/lib/app/worker")
///     .hostname("worker-1")
///     .advertise_addr("192.0.2.10")
///     .join("192.0.2.1:2377", "SWMTKN-1-...");
/// assert_eq!(cfg.hostname, "worker-1");
/// ```
#[derive(Clone)]
pub struct WorkerConfig {
    /// Where the node keeps its identity and task state.
    pub data_dir: PathBuf,
    /// The host name the node reports.
    pub hostname: String,
    /// The address the node is reached on (for host-published ports).
    pub advertise_addr: String,
    /// A manager's address and a join token, for the first start.
    pub join: Option<(String, String)>,
    /// The node's routing mesh (`None`, the default: published ports are not
    /// answered on this node).
    pub routing_mesh: Option<crate::agent::mesh::RoutingMeshConfig>,
    /// The clock of task status times (default: the system's).
    pub clock: Arc<dyn Clock>,
    /// What starts the node's overlay networks (default: the kernel's VXLAN,
    /// [`KernelOverlay`]).
    pub overlay: Arc<dyn OverlayFactory>,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("data_dir", &self.data_dir)
            .field("hostname", &self.hostname)
            .field("advertise_addr", &self.advertise_addr)
            .field("join", &self.join.as_ref().map(|(remote, _)| remote))
            .field("routing_mesh", &self.routing_mesh)
            .finish_non_exhaustive()
    }
}

impl WorkerConfig {
    /// A worker keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> WorkerConfig {
        WorkerConfig {
            data_dir: data_dir.into(),
            hostname: crate::state::hostname(),
            advertise_addr: String::new(),
            join: None,
            routing_mesh: None,
            clock: Arc::new(SystemClock),
            overlay: Arc::new(KernelOverlay),
        }
    }

    /// Sets the address the node advertises.
    pub fn advertise_addr(mut self, addr: impl Into<String>) -> Self {
        self.advertise_addr = addr.into();
        self
    }

    /// Answers published ports on this node through a routing mesh.
    pub fn routing_mesh(mut self, mesh: crate::agent::mesh::RoutingMeshConfig) -> Self {
        self.routing_mesh = Some(mesh);
        self
    }

    /// Joins through the manager at `remote` with `token` on the first start.
    pub fn join(mut self, remote: impl Into<String>, token: impl Into<String>) -> Self {
        self.join = Some((remote.into(), token.into()));
        self
    }

    /// Sets the host name.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// Takes task status times from `clock` instead of the system's.
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

/// A running worker: keeps a dispatcher session with some manager and runs the
/// tasks assigned to it through its runtime.
///
/// ```no_run
/// use std::sync::Arc;
/// use swarm::{Worker, WorkerConfig, runtime::ProcessRuntime};
///
/// # async fn demo(token: &str) -> swarm::Result<()> {
/// let runtime = Arc::new(ProcessRuntime::new("/var/lib/app/worker/runtime").unwrap());
/// let cfg = WorkerConfig::new("/var/lib/app/worker").join("192.0.2.1:2377", token);
/// let worker = Worker::start(cfg, runtime).await?;
/// println!("joined as node {}", worker.node_id());
/// worker.shutdown().await; // its tasks keep running; a restart adopts them
/// # Ok(()) }
/// ```
pub struct Worker {
    node_id: Id,
    stop: watch::Sender<bool>,
    session: Option<JoinHandle<()>>,
    mesh: Option<crate::agent::mesh::NodeMesh>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts a worker: the one saved in the data directory, or else joins with
    /// `config.join`. A wrong or rotated token is refused and nothing is saved.
    pub async fn start(config: WorkerConfig, runtime: Arc<dyn Runtime>) -> Result<Worker> {
        let dir = DataDir::open(&config.data_dir)?;
        let (node, identity, ca) = if dir.has_node() {
            let saved = dir.load()?;
            if saved.0.role == NodeRole::Manager {
                return Err(Error::FailedPrecondition(format!(
                    "{} holds a manager; start it as a manager",
                    config.data_dir.display()
                )));
            }
            saved
        } else {
            let Some((remote, token)) = &config.join else {
                return Err(Error::FailedPrecondition(format!(
                    "{} holds no node: give a manager address and a join token",
                    config.data_dir.display()
                )));
            };
            let joined = join(remote, token, &config.hostname, &config.advertise_addr).await?;
            if joined.identity.peer.role == NodeRole::Manager {
                return Err(Error::InvalidArgument(
                    "this is a manager join token: start the node as a manager, or use the worker token".into(),
                ));
            }
            let mut managers = vec![remote.clone()];
            managers.extend(joined.managers.iter().filter(|m| *m != remote).cloned());
            let node = NodeFile {
                node_id: joined.identity.peer.node_id.clone(),
                cluster_id: joined.identity.peer.cluster_id.clone(),
                role: NodeRole::Worker,
                raft_id: 0,
                managers,
            };
            dir.save(&node, &joined.identity, &joined.ca)?;
            (node, joined.identity, joined.ca)
        };
        Worker::run_saved(&config, node, identity, ca, runtime).await
    }

    /// Runs the worker saved as `node` with `identity`, trusting `ca`.
    pub(crate) async fn run_saved(
        config: &WorkerConfig,
        node: NodeFile,
        identity: NodeIdentity,
        ca: RootCa,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Worker> {
        let (stop, stop_rx) = watch::channel(false);
        // The session keeps this list current; the log relay follows it, so
        // a manager promoted or replaced after the join gets this node's logs.
        let managers = ManagerList::new(node.managers.clone());
        let followed = managers.clone();
        let running = crate::agent::run::start(
            AgentSetup {
                node_id: &node.node_id,
                hostname: &config.hostname,
                addr: crate::state::ip_of(&config.advertise_addr),
                runtime,
                clock: config.clock.clone(),
                overlay: config.overlay.clone(),
                routing_mesh: config.routing_mesh.as_ref(),
                managers,
                log_managers: Box::new(move || followed.get()),
                ca: &ca,
                identity: &identity,
            },
            &stop_rx,
        )
        .await?;
        tracing::info!(node = %node.node_id, "worker started");
        Ok(Worker {
            node_id: node.node_id,
            stop,
            session: Some(running.session),
            mesh: running.mesh,
        })
    }

    /// This node's ID.
    pub fn node_id(&self) -> &Id {
        &self.node_id
    }

    /// Stops the worker. Its tasks keep running; a restart adopts them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        if let Some(m) = self.mesh.take() {
            m.shutdown().await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = &self.session {
            h.abort();
        }
    }
}
