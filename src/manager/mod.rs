//! The manager room: everything a manager runs. A [`Manager`] is a raft member
//! with the control API ([`control`]), the CA service ([`ca`]), the dispatcher
//! ([`dispatcher`]) and the log broker ([`logbroker`]); while it leads it runs
//! the leader's loops, all started and stopped in [`leader`]: orchestrator
//! ([`orchestrator`]), allocator ([`allocator`]), scheduler driver, key manager
//! ([`keymanager`]) and roles ([`roles`]). Unless given no runtime it also runs
//! an agent like any worker's ([`crate::agent::run`]).
//!
//! May use: [`crate::agent`] (its own agent), [`crate::views`], [`crate::rpc`],
//! [`crate::pki`], [`crate::state`] and the layer crates; never [`crate::node`]
//! or [`crate::api`]. Time comes from the configured clock
//! ([`ManagerConfig::clock`]).
//!
//! ```text
//!   cluster port (mTLS, tonic) ──► Ca · Raft · Dispatcher services
//!   RaftNode ◄── RpcTransport ──► other managers        Store ◄── Control API
//!   leadership watch ──► LeaderLoops (orchestrator, allocator, scheduler)
//!   Agent ── session ──► its own dispatcher
//! ```

pub(crate) mod allocator;
pub(crate) mod ca;
mod config;
pub(crate) mod control;
pub(crate) mod dispatcher;
mod join;
pub(crate) mod keymanager;
pub(crate) mod leader;
pub(crate) mod logbroker;
pub(crate) mod orchestrator;
pub(crate) mod roles;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::types::{ManagerStatus, Node, NodeRole, NodeState, Reachability};
use swarm_core::{Id, Store};
use swarm_raft::{RaftNode, Start};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::ManagerConfig;
pub(crate) use join::{JoinedAs, join_swarm, new_raft_id};
use join::{Mode, ask_to_join, bind};

use crate::agent::run::AgentSetup;
use crate::error::{Error, Result};
use crate::manager::ca::CaService;
use crate::manager::control::Control;
use crate::manager::dispatcher::Dispatcher;
use crate::manager::leader::{LeaderConfig, follow_leadership};
use crate::manager::logbroker::LogBroker;
use crate::pki::{NodeIdentity, RootCa, client_config, cluster_server_config};
use crate::rpc::raft::{RaftService, RpcTransport};
use crate::state::{DataDir, NodeFile, describe};

/// A running manager: a raft member with the control API, the CA and the
/// dispatcher; the leader's loops while it leads; an agent when it has a
/// runtime.
///
/// ```no_run
/// use swarm::{Manager, ManagerConfig, TaskFilter};
///
/// # async fn demo() -> swarm::Result<()> {
/// let manager = Manager::start(ManagerConfig::new("/var/lib/app/m1", "127.0.0.1:2377")).await?;
/// let tokens = manager.control().join_tokens()?;
/// println!("docker swarm join --token {} {}", tokens.manager, manager.addr());
/// let tasks = manager.control().list_tasks(&TaskFilter::default())?;
/// println!("{} tasks, leader: {}", tasks.len(), manager.is_leader());
/// manager.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Manager {
    node_id: Id,
    addr: String,
    control: Control,
    raft: Arc<RaftNode>,
    logs: LogBroker,
    mesh: Option<crate::agent::mesh::NodeMesh>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("node_id", &self.node_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Starts a manager: restarts the one saved in the data directory, or else
    /// creates a new swarm (`docker swarm init`) with this node as its first
    /// manager.
    pub async fn start(cfg: ManagerConfig) -> Result<Manager> {
        let dir = DataDir::open(&cfg.data_dir)?;
        if dir.has_node() {
            let (node, identity, ca) = dir.load()?;
            if node.role != NodeRole::Manager {
                return Err(Error::FailedPrecondition(format!(
                    "{} holds a worker; start it as a worker",
                    cfg.data_dir.display()
                )));
            }
            return Manager::run(cfg, (dir, node, identity, ca), Mode::Restart, None).await;
        }
        cfg.network.checked()?;
        let ca = RootCa::generate()?;
        let cluster_id = Id::generate();
        let node_id = Id::generate();
        let (key, csr) = crate::pki::new_key_and_csr()?;
        let expiry = cfg.cluster_spec.ca_config.node_cert_expiry;
        let cert = ca.issue(&csr, &node_id, NodeRole::Manager, &cluster_id, expiry)?;
        let identity = NodeIdentity::from_pem(&key, &cert)?;
        let raft_id = new_raft_id();
        let node = NodeFile {
            node_id,
            cluster_id,
            role: NodeRole::Manager,
            raft_id,
            managers: Vec::new(),
        };
        dir.save(&node, &identity, &ca)?;
        Manager::run(cfg, (dir, node, identity, ca), Mode::Init, None).await
    }

    /// Joins the swarm of the manager at `remote` as a new manager (`docker swarm
    /// join` with the manager token): gets a manager certificate, then asks the
    /// leader to add this node to the raft group and catches up with its state.
    /// A data directory that already holds a node is refused, and so is a worker
    /// token (nothing is saved then).
    pub async fn join(cfg: ManagerConfig, remote: &str, token: &str) -> Result<Manager> {
        match join_swarm(cfg, remote, token, false).await? {
            JoinedAs::Manager(m) => Ok(m),
            JoinedAs::Worker(..) => Err(Error::Internal("joined as a worker".into())),
        }
    }

    /// Starts the manager of a node that was a worker and got a manager
    /// certificate (promotion): joins the raft group through `dir`'s managers.
    pub(crate) async fn start_promoted(
        cfg: ManagerConfig,
        dir: DataDir,
        node: NodeFile,
        identity: NodeIdentity,
        ca: RootCa,
    ) -> Result<Manager> {
        let managers = node.managers.clone();
        Manager::run(cfg, (dir, node, identity, ca), Mode::Join(managers), None).await
    }

    /// Runs the manager saved in `dir` as `node` with `identity`, trusting
    /// `ca`, on the cluster port `listener` (bound now when `None`).
    async fn run(
        cfg: ManagerConfig,
        (dir, node, identity, ca): (DataDir, NodeFile, NodeIdentity, RootCa),
        mode: Mode,
        listener: Option<TcpListener>,
    ) -> Result<Manager> {
        let listener = match listener {
            Some(l) => l,
            None => bind(&cfg.listen_addr).await?,
        };
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?
            .to_string();
        let addr = cfg.advertise_addr.clone().unwrap_or(bound);

        let store = Store::with_clock(cfg.clock.clone());
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let transport = RpcTransport::new(
            node.raft_id,
            inbox_tx.clone(),
            client_config(&ca, &identity)?,
        );
        let peers = transport.clone();
        let mut raft_cfg =
            swarm_raft::Config::new(node.raft_id, dir.raft_dir(), &cfg.cluster_spec.raft);
        raft_cfg.tick_interval = cfg.tick_interval;
        let start = match mode {
            Mode::Init => Start::NewCluster(BTreeMap::from([(node.raft_id, addr.clone())])),
            Mode::Restart | Mode::Join(_) => Start::Join,
        };
        let raft = Arc::new(
            RaftNode::start(raft_cfg, store.clone(), transport, inbox_rx, start)
                .map_err(|e| Error::Unavailable(format!("raft: {e}")))?,
        );

        let (leading_tx, leading_rx) = watch::channel(false);
        let member: crate::rpc::raft::MemberSlot = Default::default();
        let _ = member.set((raft.clone(), store.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let logs = LogBroker::new();
        let router = tonic::transport::Server::builder()
            .add_service(logs.clone().server())
            .add_service(crate::rpc::proto::ca_server::CaServer::new(CaService::new(
                ca.clone(),
                store.clone(),
            )))
            .add_service(RaftService::new(inbox_tx, member, store.clone()).server())
            .add_service(
                Dispatcher::start_with_leadership(store.clone(), leading_rx.clone()).server(),
            );
        let tls = cluster_server_config(&ca, &identity)?;
        let mut srv_stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = crate::rpc::tls::incoming(listener, tls);
            let shutdown = async move {
                let _ = srv_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = %e, "cluster RPC server stopped");
            }
        }));

        if let Mode::Join(managers) = &mode {
            ask_to_join(
                managers,
                node.raft_id,
                &addr,
                &ca,
                &identity,
                peers.as_ref(),
            )
            .await?;
        }
        raft.wait_for_leader(Duration::from_secs(30))
            .await
            .map_err(|e| Error::Unavailable(format!("raft: {e}")))?;
        let control = Control::new(store.clone());
        if let Mode::Init = mode {
            control
                .init_cluster_with(
                    node.cluster_id.clone(),
                    cfg.cluster_spec.clone(),
                    &ca,
                    &cfg.network,
                )
                .await?;
            let me = Node {
                id: node.node_id.clone(),
                spec: swarm_core::types::NodeSpec {
                    desired_role: NodeRole::Manager,
                    ..Default::default()
                },
                role: NodeRole::Manager,
                description: Some(describe(&cfg.hostname)),
                status: swarm_core::types::NodeStatus {
                    state: NodeState::Ready,
                    ..Default::default()
                },
                manager_status: Some(ManagerStatus {
                    raft_id: node.raft_id,
                    addr: addr.clone(),
                    leader: true,
                    reachability: Reachability::Reachable,
                }),
                ..Default::default()
            };
            store.update(|tx| tx.create(me).map(drop)).await?;
        }

        let leader = LeaderConfig {
            scheduler: cfg.scheduler.clone(),
            clock: cfg.clock.clone(),
            key_rotation: cfg.network_key_rotation,
        };
        tasks.push(tokio::spawn(follow_leadership(
            raft.clone(),
            store.clone(),
            node.node_id.clone(),
            leader,
            leading_tx,
            stop_rx.clone(),
        )));

        let mut mesh = None;
        if let Some(runtime) = cfg.runtime.clone() {
            let mut managers = vec![addr.clone()];
            managers.extend(
                crate::manager::dispatcher::manager_addrs(&store.view())
                    .into_iter()
                    .filter(|a| *a != addr),
            );
            let (view_store, own) = (store.clone(), addr.clone());
            let log_managers = move || {
                let mut m = crate::manager::dispatcher::manager_addrs(&view_store.view());
                if !m.contains(&own) {
                    m.push(own.clone());
                }
                m
            };
            let running = crate::agent::run::start(
                AgentSetup {
                    node_id: &node.node_id,
                    hostname: &cfg.hostname,
                    addr: crate::state::ip_of(&addr),
                    runtime,
                    clock: cfg.clock.clone(),
                    overlay: cfg.overlay.clone(),
                    routing_mesh: cfg.routing_mesh.as_ref(),
                    managers: managers.into(),
                    log_managers: Box::new(log_managers),
                    ca: &ca,
                    identity: &identity,
                },
                &stop_rx,
            )
            .await?;
            mesh = running.mesh;
            tasks.push(running.session);
            tasks.push(running.logs);
        }
        tracing::info!(node = %node.node_id, addr = %addr, "manager started");
        Ok(Manager {
            node_id: node.node_id,
            addr,
            control,
            raft,
            logs,
            mesh,
            stop,
            tasks,
        })
    }

    /// This node's ID.
    pub fn node_id(&self) -> &Id {
        &self.node_id
    }

    /// The address other nodes reach this manager on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The control API.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Task output from the nodes (`docker service logs`).
    pub fn logs(&self) -> &LogBroker {
        &self.logs
    }

    /// The Swarm block of `docker info`, as this manager sees it.
    pub fn info(&self) -> Result<crate::manager::control::SwarmInfo> {
        self.control.info(&self.node_id, &self.addr)
    }

    /// Whether this manager is the raft leader now.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// Stops the manager. Tasks its agent runs keep running; a restart adopts them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // Leave raft first so the other managers elect a new leader at once.
        self.raft.shutdown();
        for t in self.tasks.drain(..) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Some(m) = self.mesh.take() {
            m.shutdown().await;
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.raft.shutdown();
    }
}
