//! A node that follows its role: the agent, plus the manager while the swarm
//! makes it one. `docker node promote` turns a running worker into a manager
//! and `docker node demote` turns it back, without restarting the host process
//! and without touching the tasks it runs.
//!
//! ```text
//!   Node ── WatchRole (CA service, any manager) ──► role in the store changed
//!     └─► RenewNodeCertificate (certificate of the new role)
//!         └─► stop the Worker / Manager, start the other from the data dir
//!             (the new agent adopts the running tasks)
//! ```
//!
//! A manager watches its role at *another* manager: once the leader has taken a
//! demoted manager out of the raft group, its own store no longer follows the
//! swarm.
//!
//! Room: the top of a node, above [`crate::manager`] and [`crate::agent`], which
//! it starts and stops; only [`crate::api`] sits above it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use swarm_core::Id;
use swarm_core::types::NodeRole;
use swarm_runtime::Runtime;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::agent::worker::Worker;
use crate::error::{Error, Result};
use crate::manager::control::{Control, SwarmInfo};
use crate::manager::{JoinedAs, Manager, ManagerConfig, join_swarm, new_raft_id};
use crate::rpc::ca::{renew, role_of, watch_role};
use crate::state::DataDir;

/// How long to wait before trying the managers again.
const RETRY: Duration = Duration::from_millis(500);

/// What runs now.
enum Running {
    Manager(Manager),
    Worker(Worker),
    /// Between two roles (or after a failed switch, until it is retried).
    Stopped,
}

struct Shared {
    cfg: parking_lot::Mutex<ManagerConfig>,
    runtime: Arc<dyn Runtime>,
    dir: DataDir,
    running: Mutex<Running>,
    role: watch::Sender<NodeRole>,
}

/// A swarm node whose role follows `node promote` / `node demote`: it runs as a
/// worker or a manager as the swarm says, renews its certificate before it
/// expires, and keeps its tasks across the switch. `swarmd` runs one.
///
/// ```no_run
/// use std::sync::Arc;
/// use swarm::{ManagerConfig, Node, runtime::ProcessRuntime};
///
/// # async fn demo(token: &str) -> swarm::Result<()> {
/// let runtime = Arc::new(ProcessRuntime::new("/var/lib/app/node/runtime").unwrap());
/// let cfg = ManagerConfig::new("/var/lib/app/node", "0.0.0.0:2377").runtime(runtime);
/// let node = Node::join(cfg, "192.0.2.1:2377", token).await?;
/// let mut role = node.watch_role();
/// role.changed().await.ok(); // promoted or demoted
/// println!("now a {:?}", *role.borrow());
/// # Ok(()) }
/// ```
pub struct Node {
    node_id: Id,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    follower: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.node_id)
            .field("role", &*self.shared.role.borrow())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts the node saved in `cfg.data_dir` in its saved role, or else
    /// creates a new swarm with this node as its first manager. `cfg.runtime`
    /// is required: a node runs tasks.
    pub async fn start(cfg: ManagerConfig) -> Result<Node> {
        let runtime = runtime_of(&cfg)?;
        let dir = DataDir::open(&cfg.data_dir)?;
        let saved = if dir.has_node() {
            Some(dir.load()?)
        } else {
            None
        };
        let running = match saved {
            Some((node, identity, ca)) if node.role == NodeRole::Worker => Running::Worker(
                Worker::run_saved(&worker_config(&cfg), node, identity, ca, runtime.clone())
                    .await?,
            ),
            _ => Running::Manager(Manager::start(cfg.clone()).await?),
        };
        Node::follow(cfg, runtime, dir, running)
    }

    /// Joins the swarm of the manager at `remote` with `token`, as the role the
    /// token grants. A data directory that already holds a node is refused.
    pub async fn join(cfg: ManagerConfig, remote: &str, token: &str) -> Result<Node> {
        let runtime = runtime_of(&cfg)?;
        let dir = DataDir::open(&cfg.data_dir)?;
        let running = match join_swarm(cfg.clone(), remote, token, true).await? {
            JoinedAs::Manager(m) => Running::Manager(m),
            JoinedAs::Worker(saved) => {
                let (node, identity, ca) = *saved;
                Running::Worker(
                    Worker::run_saved(&worker_config(&cfg), node, identity, ca, runtime.clone())
                        .await?,
                )
            }
        };
        Node::follow(cfg, runtime, dir, running)
    }

    fn follow(
        cfg: ManagerConfig,
        runtime: Arc<dyn Runtime>,
        dir: DataDir,
        running: Running,
    ) -> Result<Node> {
        let (node_id, role) = match &running {
            Running::Manager(m) => (m.node_id().clone(), NodeRole::Manager),
            Running::Worker(w) => (w.node_id().clone(), NodeRole::Worker),
            Running::Stopped => return Err(Error::Internal("no role to start in".into())),
        };
        let (role, _) = watch::channel(role);
        let shared = Arc::new(Shared {
            cfg: parking_lot::Mutex::new(cfg),
            runtime,
            dir,
            running: Mutex::new(running),
            role,
        });
        let (stop, stop_rx) = watch::channel(false);
        if let Ok(r) = shared.running.try_lock()
            && let Running::Manager(m) = &*r
        {
            shared.pin_addr(m);
        }
        let follower = tokio::spawn(follow_role(shared.clone(), stop_rx));
        Ok(Node {
            node_id,
            shared,
            stop,
            follower: Some(follower),
        })
    }

    /// This node's ID.
    pub fn node_id(&self) -> &Id {
        &self.node_id
    }

    /// The role the node runs in now.
    pub fn role(&self) -> NodeRole {
        *self.shared.role.borrow()
    }

    /// Follows the role the node runs in.
    pub fn watch_role(&self) -> watch::Receiver<NodeRole> {
        self.shared.role.subscribe()
    }

    /// The control API, while the node is a manager.
    pub async fn control(&self) -> Option<Control> {
        match &*self.shared.running.lock().await {
            Running::Manager(m) => Some(m.control().clone()),
            _ => None,
        }
    }

    /// The cluster address, while the node is a manager.
    pub async fn manager_addr(&self) -> Option<String> {
        match &*self.shared.running.lock().await {
            Running::Manager(m) => Some(m.addr().to_string()),
            _ => None,
        }
    }

    /// The log broker, while the node is a manager.
    pub async fn log_broker(&self) -> Option<crate::manager::logbroker::LogBroker> {
        match &*self.shared.running.lock().await {
            Running::Manager(m) => Some(m.logs().clone()),
            _ => None,
        }
    }

    /// Whether the node is the raft leader now.
    pub async fn is_leader(&self) -> bool {
        match &*self.shared.running.lock().await {
            Running::Manager(m) => m.is_leader(),
            _ => false,
        }
    }

    /// The Swarm block of `docker info`, while the node is a manager.
    pub async fn info(&self) -> Result<SwarmInfo> {
        match &*self.shared.running.lock().await {
            Running::Manager(m) => m.info(),
            _ => Err(Error::FailedPrecondition(
                "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."
                    .into(),
            )),
        }
    }

    /// Renews this node's certificate now (it also happens on its own, at a
    /// random point between half and 80 % of the certificate's life): a new key,
    /// the same node ID and role. The node restarts its role with it; its tasks
    /// keep running.
    pub async fn renew_certificate(&self) -> Result<()> {
        let mut last = Error::Unavailable("no manager known".into());
        for addr in watch_targets(&self.shared).await {
            let role = *self.shared.role.borrow();
            match switch(&self.shared, role, &addr).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Stops the node. Its tasks keep running; a restart adopts them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(f) = self.follower.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
        }
        let running = std::mem::replace(&mut *self.shared.running.lock().await, Running::Stopped);
        stop_running(running).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(f) = &self.follower {
            f.abort();
        }
    }
}

impl Shared {
    fn cfg(&self) -> ManagerConfig {
        self.cfg.lock().clone()
    }

    /// Keeps the cluster port a manager got from port 0, so a restart of the
    /// role (certificate renewal) comes back where the other managers expect.
    fn pin_addr(&self, m: &Manager) {
        let mut cfg = self.cfg.lock();
        if cfg.advertise_addr.is_none() && cfg.listen_addr.ends_with(":0") {
            cfg.listen_addr = m.addr().to_string();
        }
    }
}

/// The settings a node started from `cfg` runs with while it is a worker.
fn worker_config(cfg: &ManagerConfig) -> crate::agent::worker::WorkerConfig {
    crate::agent::worker::WorkerConfig {
        data_dir: cfg.data_dir.clone(),
        hostname: cfg.hostname.clone(),
        advertise_addr: cfg.advertise_addr.clone().unwrap_or_default(),
        join: None,
        routing_mesh: cfg.routing_mesh.clone(),
        clock: cfg.clock.clone(),
        overlay: cfg.overlay.clone(),
    }
}

fn runtime_of(cfg: &ManagerConfig) -> Result<Arc<dyn Runtime>> {
    cfg.runtime.clone().ok_or_else(|| {
        Error::InvalidArgument(
            "a node needs a runtime to run tasks with (ManagerConfig::runtime)".into(),
        )
    })
}

async fn stop_running(running: Running) {
    match running {
        Running::Manager(m) => m.shutdown().await,
        Running::Worker(w) => w.shutdown().await,
        Running::Stopped => {}
    }
}

/// The managers to watch this node's role at: the saved list for a worker;
/// the other managers for a manager (its own store stops following the swarm
/// once it is out of the raft group).
async fn watch_targets(shared: &Shared) -> Vec<String> {
    if let Running::Manager(m) = &*shared.running.lock().await {
        let others: Vec<String> =
            crate::manager::dispatcher::manager_addrs(&m.control().store().view())
                .into_iter()
                .filter(|a| a != m.addr())
                .collect();
        if !others.is_empty() {
            return others;
        }
        return vec![m.addr().to_string()];
    }
    shared
        .dir
        .load()
        .map(|(n, _, _)| n.managers)
        .unwrap_or_default()
}

/// When the certificate in `dir` is due for renewal.
fn renewal_due(dir: &DataDir) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let Ok((_, identity, _)) = dir.load() else {
        return now + Duration::from_secs(3600);
    };
    let at = identity.peer.renew_at(rand::random_range(0.5..0.8));
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    now + Duration::from_secs((at - unix_now).max(0) as u64)
}

/// Watches the node's role at the managers and switches when it changes;
/// renews the certificate when it is due.
async fn follow_role(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let renew = renewal_due(&shared.dir);
        for addr in watch_targets(&shared).await {
            let Ok((_, identity, ca)) = shared.dir.load() else {
                break;
            };
            let mut updates = tokio::select! {
                r = watch_role(&addr, &ca, &identity) => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(manager = %addr, error = %e, "role watch unavailable");
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            loop {
                let next = tokio::select! {
                    n = updates.next() => n,
                    _ = tokio::time::sleep_until(renew) => {
                        let role = *shared.role.borrow();
                        match switch(&shared, role, &addr).await {
                            Ok(()) => tracing::info!("node certificate renewed"),
                            Err(e) => tracing::warn!(error = %e, "could not renew the node certificate; retrying"),
                        }
                        break;
                    }
                    _ = stop.changed() => return,
                };
                let update = match next {
                    Some(Ok(u)) => u,
                    Some(Err(s)) => {
                        tracing::warn!(manager = %addr, error = %s.message(), "role watch ended");
                        break;
                    }
                    None => break,
                };
                remember_managers(&shared.dir, &update.managers);
                let want = role_of(&update.role);
                if want == *shared.role.borrow() {
                    continue;
                }
                match switch(&shared, want, &addr).await {
                    Ok(()) => tracing::info!(role = ?want, "node role switched"),
                    Err(e) => {
                        tracing::warn!(role = ?want, error = %e, "could not switch role; retrying")
                    }
                }
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Keeps the saved manager list current, for restarts.
fn remember_managers(dir: &DataDir, managers: &[String]) {
    if managers.is_empty() {
        return;
    }
    if let Ok((mut node, _, _)) = dir.load()
        && node.managers != managers
    {
        node.managers = managers.to_vec();
        if let Err(e) = dir.save_node(&node) {
            tracing::warn!(error = %e, "could not save the manager list");
        }
    }
}

/// Gets a certificate for `want` from the manager at `addr`, stops what runs
/// and starts `want` from the data directory: the other role (promotion,
/// demotion), or the same one again with the renewed certificate.
async fn switch(shared: &Shared, want: NodeRole, addr: &str) -> Result<()> {
    let (mut node, identity, ca) = shared.dir.load()?;
    let (renewed, managers) = renew(addr, &ca, &identity).await?;
    if renewed.peer.role != want {
        return Err(Error::Unavailable(format!(
            "the swarm has not recorded the new role yet (certificate for {:?})",
            renewed.peer.role
        )));
    }
    let mut running = shared.running.lock().await;
    stop_running(std::mem::replace(&mut *running, Running::Stopped)).await;
    if !managers.is_empty() {
        node.managers = managers;
    }
    if node.role == want {
        shared.dir.save(&node, &renewed, &ca)?;
        *running = match want {
            NodeRole::Manager => Running::Manager(Manager::start(shared.cfg()).await?),
            NodeRole::Worker => Running::Worker(
                Worker::run_saved(
                    &worker_config(&shared.cfg()),
                    node,
                    renewed,
                    ca,
                    shared.runtime.clone(),
                )
                .await?,
            ),
        };
        return Ok(());
    }
    node.role = want;
    shared.dir.forget_manager_state()?;
    match want {
        NodeRole::Manager => {
            node.raft_id = new_raft_id();
            shared.dir.save(&node, &renewed, &ca)?;
            let m = Manager::start_promoted(shared.cfg(), shared.dir.clone(), node, renewed, ca)
                .await?;
            shared.pin_addr(&m);
            *running = Running::Manager(m);
        }
        NodeRole::Worker => {
            node.raft_id = 0;
            let ca = crate::pki::RootCa::from_pem(ca.cert_pem(), None)?;
            shared.dir.save(&node, &renewed, &ca)?;
            let w = Worker::run_saved(
                &worker_config(&shared.cfg()),
                node,
                renewed,
                ca,
                shared.runtime.clone(),
            )
            .await?;
            *running = Running::Worker(w);
        }
    }
    shared.role.send_replace(want);
    Ok(())
}
