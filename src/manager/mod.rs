//! A manager node: raft member, control API, CA, dispatcher, the leader loops
//! when it leads, and (unless given no runtime) an agent running tasks like any
//! worker.
//!
//! ```text
//!   cluster port (mTLS, tonic) ──► Ca · Raft · Dispatcher services
//!   RaftNode ◄── RpcTransport ──► other managers        Store ◄── Control API
//!   leadership watch ──► LeaderLoops (orchestrator, allocator, scheduler)
//!   Agent ── session ──► its own dispatcher
//! ```

pub(crate) mod allocator;
pub(crate) mod ca;
pub(crate) mod control;
pub(crate) mod dispatcher;
pub(crate) mod keymanager;
pub(crate) mod leader;
pub(crate) mod logbroker;
pub(crate) mod orchestrator;
pub(crate) mod roles;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::types::{ClusterSpec, ManagerStatus, Node, NodeRole, NodeState, Reachability};
use swarm_core::{Id, Store, SystemClock};
use swarm_raft::{RaftNode, Start, Transport};
use swarm_runtime::Runtime;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::agent::session::{SessionConfig, run as run_session};
use crate::error::{Error, Result};
use crate::manager::ca::CaService;
use crate::manager::control::{Control, NetworkConfig};
use crate::manager::dispatcher::Dispatcher;
use crate::manager::leader::{LeaderLoops, SchedulerFactory};
use crate::manager::logbroker::LogBroker;
use crate::pki::{NodeIdentity, RootCa, client_config, cluster_server_config};
use crate::rpc::raft::{RaftService, RpcTransport};
use crate::state::{DataDir, NodeFile, describe};

/// How to run a manager.
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
    pub routing_mesh: Option<crate::agent::mesh::RoutingMeshConfig>,
    /// Address pools, subnet size and data-path port of a new swarm (`init`).
    pub network: NetworkConfig,
    /// How often this manager, while it leads, rotates the encryption keys of
    /// encrypted overlay networks (default 12 hours, as Docker).
    pub network_key_rotation: Duration,
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
        }
    }

    /// Sets how often the leader rotates the overlay encryption keys.
    pub fn network_key_rotation(mut self, every: Duration) -> Self {
        self.network_key_rotation = every;
        self
    }

    /// Answers published ports on this node through a routing mesh.
    pub fn routing_mesh(mut self, mesh: crate::agent::mesh::RoutingMeshConfig) -> Self {
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
}

/// A fresh raft member ID: random, non-zero, never reused.
pub(crate) fn new_raft_id() -> u64 {
    loop {
        let r: u64 = rand::random();
        if r != 0 {
            return r;
        }
    }
}

/// Listens on the cluster port.
async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr}: {e}")))
}

/// How a manager comes up.
enum Mode {
    /// Founds a new swarm.
    Init,
    /// Restarts from its data directory.
    Restart,
    /// Joins the raft group through these managers.
    Join(Vec<String>),
}

/// Asks the managers, in turn, to add this member; the leader answers with the
/// members of the group and their addresses.
async fn ask_to_join(
    managers: &[String],
    raft_id: u64,
    addr: &str,
    ca: &RootCa,
    identity: &NodeIdentity,
    peers: &dyn Transport,
) -> Result<()> {
    use crate::rpc::proto::raft_client::RaftClient;
    use crate::rpc::proto::{Empty, JoinRaftRequest};
    let tls = client_config(ca, identity)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no manager answered");
    while tokio::time::Instant::now() < deadline {
        for m in managers {
            let ch = crate::rpc::tls::channel(m, tls.clone(), crate::pki::MANAGER_OU)?;
            // Learn the members first, so this member can answer the leader
            // while it catches up.
            match tokio::time::timeout(
                Duration::from_secs(5),
                RaftClient::new(ch.clone()).members(Empty {}),
            )
            .await
            {
                Ok(Ok(r)) => {
                    for m in r.into_inner().members {
                        peers.set_peer(m.raft_id, Some(&m.addr));
                    }
                }
                _ => continue,
            }
            let req = JoinRaftRequest {
                raft_id,
                addr: addr.to_string(),
            };
            match tokio::time::timeout(Duration::from_secs(15), RaftClient::new(ch).join(req)).await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(s))
                    if s.code() == tonic::Code::PermissionDenied
                        || s.code() == tonic::Code::NotFound =>
                {
                    return Err(crate::rpc::tls::from_status(s));
                }
                Ok(Err(s)) => last = format!("{m}: {}", s.message()),
                Err(_) => last = format!("{m}: no answer"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::Unavailable(format!(
        "could not join the raft group: {last}"
    )))
}

/// What joining a swarm made of this node.
pub(crate) enum JoinedAs {
    /// A running manager.
    Manager(Manager),
    /// A worker, saved in its data directory, not started yet.
    Worker(Box<(NodeFile, NodeIdentity, RootCa)>),
}

/// Joins the swarm of the manager at `remote` with `token`, as the role the
/// token grants; a worker token is refused unless `accept_worker`, and nothing
/// is saved then.
pub(crate) async fn join_swarm(
    cfg: ManagerConfig,
    remote: &str,
    token: &str,
    accept_worker: bool,
) -> Result<JoinedAs> {
    let dir = DataDir::open(&cfg.data_dir)?;
    if dir.has_node() {
        return Err(Error::FailedPrecondition(format!(
            "{} already holds a node of a swarm: start it instead of joining again",
            cfg.data_dir.display()
        )));
    }
    let listener = bind(&cfg.listen_addr).await?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?
        .to_string();
    let addr = cfg.advertise_addr.clone().unwrap_or(bound);
    let joined = crate::rpc::ca::join(remote, token, &cfg.hostname, &addr).await?;
    let role = joined.identity.peer.role;
    if role != NodeRole::Manager && !accept_worker {
        return Err(Error::InvalidArgument(
            "this is a worker join token: start the node as a worker, or use the manager token"
                .into(),
        ));
    }
    let mut managers = vec![remote.to_string()];
    managers.extend(joined.managers.iter().filter(|m| *m != remote).cloned());
    let node = NodeFile {
        node_id: joined.identity.peer.node_id.clone(),
        cluster_id: joined.identity.peer.cluster_id.clone(),
        role,
        raft_id: if role == NodeRole::Manager {
            new_raft_id()
        } else {
            0
        },
        managers: managers.clone(),
    };
    dir.save(&node, &joined.identity, &joined.ca)?;
    if role != NodeRole::Manager {
        return Ok(JoinedAs::Worker(Box::new((
            node,
            joined.identity,
            joined.ca,
        ))));
    }
    let cfg = ManagerConfig {
        advertise_addr: Some(addr),
        ..cfg
    };
    let m = Manager::run_on(
        cfg,
        dir,
        node,
        joined.identity,
        joined.ca,
        Mode::Join(managers),
        listener,
    )
    .await?;
    Ok(JoinedAs::Manager(m))
}

/// A running manager.
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
            return Manager::run(cfg, dir, node, identity, ca, Mode::Restart).await;
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
        Manager::run(cfg, dir, node, identity, ca, Mode::Init).await
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
        Manager::run(cfg, dir, node, identity, ca, Mode::Join(managers)).await
    }

    async fn run(
        cfg: ManagerConfig,
        dir: DataDir,
        node: NodeFile,
        identity: NodeIdentity,
        ca: RootCa,
        mode: Mode,
    ) -> Result<Manager> {
        let listener = bind(&cfg.listen_addr).await?;
        Manager::run_on(cfg, dir, node, identity, ca, mode, listener).await
    }

    async fn run_on(
        cfg: ManagerConfig,
        dir: DataDir,
        node: NodeFile,
        identity: NodeIdentity,
        ca: RootCa,
        mode: Mode,
        listener: TcpListener,
    ) -> Result<Manager> {
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?
            .to_string();
        let addr = cfg.advertise_addr.clone().unwrap_or(bound);

        let store = Store::new();
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
            .add_service(RaftService::new(inbox_tx, member).server())
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

        tasks.push(tokio::spawn(crate::manager::roles::run(
            raft.clone(),
            store.clone(),
            leading_rx.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(follow_leadership(
            raft.clone(),
            store.clone(),
            node.node_id.clone(),
            cfg.scheduler.clone(),
            cfg.network_key_rotation,
            leading_tx,
            stop_rx.clone(),
        )));

        let mut mesh = None;
        if let Some(runtime) = cfg.runtime.clone() {
            let (agent, updates) =
                Agent::new(node.node_id.clone(), runtime.clone(), Arc::new(SystemClock))
                    .await
                    .map_err(|e| Error::Unavailable(format!("runtime: {e}")))?;
            let mut managers = vec![addr.clone()];
            managers.extend(
                crate::manager::dispatcher::manager_addrs(&store.view())
                    .into_iter()
                    .filter(|a| *a != addr),
            );
            let mut description = describe(&cfg.hostname);
            mesh = crate::agent::mesh::NodeMesh::start_if(
                cfg.routing_mesh.as_ref(),
                crate::state::ip_of(&addr),
                &node.node_id,
                &agent.runtime(),
                &stop_rx,
            )
            .await?;
            let ingress = mesh.as_ref().map(|m| {
                description.mesh_addr = m.addr.clone();
                m.views.clone()
            });
            let session = SessionConfig {
                managers: managers.into(),
                tls: client_config(&ca, &identity)?,
                description,
                addr: crate::state::ip_of(&addr)
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                ingress,
            };
            let srx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                run_session(session, agent, updates, srx).await.detach();
            }));
            let (view_store, own) = (store.clone(), addr.clone());
            let managers = move || {
                let mut m = crate::manager::dispatcher::manager_addrs(&view_store.view());
                if !m.contains(&own) {
                    m.push(own.clone());
                }
                m
            };
            tasks.push(tokio::spawn(crate::agent::logs::serve_node(
                managers,
                ca.clone(),
                identity.clone(),
                runtime,
                stop_rx.clone(),
            )));
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

/// Starts the leader loops while this member leads, stops them when it does not,
/// and records who leads in the managers' node objects.
async fn follow_leadership(
    raft: Arc<RaftNode>,
    store: Store,
    node_id: Id,
    scheduler: SchedulerFactory,
    key_rotation: Duration,
    leading_tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut leadership = raft.watch_leadership();
    let mut loops: Option<LeaderLoops> = None;
    loop {
        let leading = leadership.borrow_and_update().leader == Some(raft.id());
        leading_tx.send_replace(leading);
        if leading && loops.is_none() {
            tracing::info!(node = %node_id, "leading: starting the orchestrator, allocator and scheduler");
            loops = Some(LeaderLoops::start_with(
                store.clone(),
                scheduler.clone(),
                Arc::new(SystemClock),
                key_rotation,
            ));
            let raft_id = raft.id();
            let r = crate::manager::control::update_retrying(&store, |tx| {
                let managers: Vec<_> = tx
                    .list::<Node>()
                    .filter(|n| n.manager_status.is_some())
                    .collect();
                for n in managers {
                    let ms = n.manager_status.as_ref().expect("filtered");
                    let lead = ms.raft_id == raft_id;
                    if ms.leader != lead {
                        let mut n = (*n).clone();
                        if let Some(ms) = n.manager_status.as_mut() {
                            ms.leader = lead;
                        }
                        tx.update(n)?;
                    }
                }
                Ok(())
            })
            .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "could not record the new leader");
            }
        } else if !leading && let Some(l) = loops.take() {
            tracing::info!(node = %node_id, "no longer leading: stopping the leader loops");
            l.stop().await;
        }
        tokio::select! {
            r = leadership.changed() => if r.is_err() { break },
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
    if let Some(l) = loops.take() {
        l.stop().await;
    }
}
