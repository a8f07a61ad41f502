//! [`Cluster`]: a swarm in one process, over real sockets (mutual TLS, raft
//! with fsync) on 127.0.0.1, each node with its own data directory.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Id;
use swarm_core::types::ClusterSpec;
use swarm_runtime::Runtime;

use super::{FAST_TICK, Patience, eventually, process_runtime, ready_nodes};
use crate::{Control, Manager, ManagerConfig, NetworkConfig, Worker, WorkerConfig};

/// A node of a [`Cluster`] being made, as the closure that gives it its
/// runtime sees it.
#[derive(Clone, Copy, Debug)]
pub struct NodeDir<'a> {
    /// Its place: the managers first (0 initialised the swarm), then the
    /// workers.
    pub index: usize,
    /// Its host name: `manager1`, `manager2`, ..., `worker1`, ...
    pub hostname: &'a str,
    /// Its data directory.
    pub path: &'a Path,
}

/// What [`Cluster`] to start: by default one manager and no worker, the
/// managers ticking every [`FAST_TICK`] and running tasks too, SwarmKit's
/// default settings.
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    managers: usize,
    workers: usize,
    tick: Option<Duration>,
    spec: Option<ClusterSpec>,
    network: Option<NetworkConfig>,
    managers_run_tasks: bool,
}

impl ClusterBuilder {
    /// `n` managers (at least one): the first initialises the swarm, the
    /// others join it with the manager token.
    pub fn managers(mut self, n: usize) -> Self {
        assert!(n >= 1, "a swarm has a manager");
        self.managers = n;
        self
    }

    /// `n` workers, joined with the worker token through the first manager.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The managers tick at [`ManagerConfig`]'s default interval rather than
    /// [`FAST_TICK`]: what a deployment runs, for a bench that measures it.
    pub fn default_tick(mut self) -> Self {
        self.tick = None;
        self
    }

    /// The settings the first manager initialises the swarm with.
    pub fn cluster_spec(mut self, spec: ClusterSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// The address pools the first manager initialises the swarm with.
    pub fn network(mut self, network: NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    /// Whether the managers run tasks (the default) or only manage: a
    /// manager without a runtime is given no task.
    pub fn managers_run_tasks(mut self, run: bool) -> Self {
        self.managers_run_tasks = run;
        self
    }

    /// Starts the swarm, every node running tasks with a
    /// [`process_runtime`](super::process_runtime) in its data directory.
    ///
    /// # Panics
    ///
    /// When a node does not start or join.
    pub async fn start(self) -> Cluster {
        self.start_with(|node| process_runtime(node.path)).await
    }

    /// Starts the swarm, each node that runs tasks with the runtime `runtime`
    /// gives it (called once a node, in node order, before the node starts).
    ///
    /// # Panics
    ///
    /// When a node does not start or join.
    pub async fn start_with(
        self,
        mut runtime: impl FnMut(NodeDir<'_>) -> Arc<dyn Runtime>,
    ) -> Cluster {
        let base = tempfile::tempdir().expect("a temporary directory");
        let mut runtimes = Vec::new();
        let mut managers: Vec<Manager> = Vec::new();
        let mut joining = None;
        for i in 0..self.managers {
            let hostname = format!("manager{}", i + 1);
            let dir = base.path().join(&hostname);
            let mut cfg = ManagerConfig::new(&dir, "127.0.0.1:0").hostname(&hostname);
            if let Some(tick) = self.tick {
                cfg = cfg.tick_interval(tick);
            }
            let rt = self.managers_run_tasks.then(|| {
                runtime(NodeDir {
                    index: i,
                    hostname: &hostname,
                    path: &dir,
                })
            });
            if let Some(rt) = &rt {
                cfg = cfg.runtime(rt.clone());
            }
            let manager = match &joining {
                None => {
                    if let Some(spec) = &self.spec {
                        cfg = cfg.cluster_spec(spec.clone());
                    }
                    if let Some(network) = &self.network {
                        cfg = cfg.network(network.clone());
                    }
                    let first = Manager::start(cfg).await.expect("the first manager starts");
                    let tokens = first.control().join_tokens().expect("join tokens");
                    joining = Some((first.addr().to_string(), tokens));
                    first
                }
                Some((remote, tokens)) => Manager::join(cfg, remote, &tokens.manager)
                    .await
                    .unwrap_or_else(|e| panic!("{hostname} joins: {e}")),
            };
            if let Some(rt) = rt {
                runtimes.push((manager.node_id().clone(), rt));
            }
            managers.push(manager);
        }
        let (remote, tokens) = joining.expect("a first manager");
        let mut workers = Vec::new();
        for i in 0..self.workers {
            let hostname = format!("worker{}", i + 1);
            let dir = base.path().join(&hostname);
            let rt = runtime(NodeDir {
                index: self.managers + i,
                hostname: &hostname,
                path: &dir,
            });
            let cfg = WorkerConfig::new(&dir)
                .hostname(&hostname)
                .join(&remote, &tokens.worker);
            let worker = Worker::start(cfg, rt.clone())
                .await
                .unwrap_or_else(|e| panic!("{hostname} joins: {e}"));
            runtimes.push((worker.node_id().clone(), rt));
            workers.push(worker);
        }
        Cluster {
            managers,
            workers,
            runtimes,
            stopped: Vec::new(),
            base,
        }
    }
}

/// A swarm in one process: managers and workers on 127.0.0.1 (ports picked by
/// the system), each with its data directory in one temporary directory
/// (removed when the cluster is dropped) and, when it runs tasks, the runtime
/// it was started with.
///
/// A node stopped while it still has tasks leaves them running (a node that
/// restarts adopts them); [`until_no_tasks`](Self::until_no_tasks) removes
/// those of the nodes stopped through the cluster, which nothing runs any more.
pub struct Cluster {
    /// The managers still up, the one that initialised the swarm first
    /// (hostnames `manager1`, ...).
    pub managers: Vec<Manager>,
    /// The workers still up (hostnames `worker1`, ...).
    pub workers: Vec<Worker>,
    /// Each node's runtime, in node order: node ID, runtime.
    runtimes: Vec<(Id, Arc<dyn Runtime>)>,
    /// The nodes stopped through [`stop_leader`](Self::stop_leader) and
    /// [`stop_worker`](Self::stop_worker).
    stopped: Vec<Id>,
    /// Every node's data directory, removed once the nodes are dropped.
    base: tempfile::TempDir,
}

impl Cluster {
    /// How long [`remove_and_shutdown`](Self::remove_and_shutdown) waits for
    /// the nodes to remove a service's tasks.
    pub const CLEAN_UP: Duration = Duration::from_secs(60);

    /// One manager, no worker, fast ticks: see [`ClusterBuilder`].
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            managers: 1,
            workers: 0,
            tick: Some(FAST_TICK),
            spec: None,
            network: None,
            managers_run_tasks: true,
        }
    }

    /// The first manager still up.
    pub fn manager(&self) -> &Manager {
        self.managers.first().expect("a manager up")
    }

    /// The [`Control`] of the first manager still up: it reads that manager's
    /// replica of the store and forwards writes to the leader.
    pub fn control(&self) -> Control {
        self.manager().control().clone()
    }

    /// The manager that leads, if one does now.
    pub fn leader(&self) -> Option<&Manager> {
        self.managers.iter().find(|m| m.is_leader())
    }

    /// The data directory of node `hostname` (`manager1`, `worker2`, ...).
    pub fn dir(&self, hostname: &str) -> PathBuf {
        self.base.path().join(hostname)
    }

    /// The runtime node `node` was started with (none when it runs no task).
    pub fn runtime(&self, node: &Id) -> Option<&Arc<dyn Runtime>> {
        self.runtimes
            .iter()
            .find(|(id, _)| id == node)
            .map(|(_, rt)| rt)
    }

    /// Waits with [`PATIENCE`](super::PATIENCE) until every node up is READY
    /// (seen by [`control`](Self::control)).
    pub async fn until_ready(&self) {
        let nodes = self.managers.len() + self.workers.len();
        let control = self.control();
        eventually(&format!("{nodes} ready nodes"), || {
            ready_nodes(&control) == nodes
        })
        .await;
    }

    /// Stops the manager that leads (its tasks stay on its runtime): its node
    /// ID.
    ///
    /// # Panics
    ///
    /// When no manager leads.
    pub async fn stop_leader(&mut self) -> Id {
        let at = self
            .managers
            .iter()
            .position(|m| m.is_leader())
            .expect("a leader");
        let gone = self.managers.remove(at);
        let id = gone.node_id().clone();
        gone.shutdown().await;
        self.stopped.push(id.clone());
        id
    }

    /// Stops worker `i` of [`workers`](Self::workers), like a crash for the
    /// swarm: it stops heartbeating and its tasks stay on its runtime. Its
    /// node ID.
    pub async fn stop_worker(&mut self, i: usize) -> Id {
        let gone = self.workers.remove(i);
        let id = gone.node_id().clone();
        gone.shutdown().await;
        self.stopped.push(id.clone());
        id
    }

    /// Waits until no runtime holds a task, removing on the way those of the
    /// nodes stopped through the cluster (nothing runs them any more); looks
    /// every 50 ms.
    ///
    /// # Panics
    ///
    /// When tasks are left after `within`, saying how many.
    pub async fn until_no_tasks(&self, within: Duration) {
        let left = Cell::new(0);
        let gone = Patience::within(within)
            .every(Duration::from_millis(50))
            .poll_async(async || {
                let mut n = 0;
                for (id, rt) in &self.runtimes {
                    let listed = rt.list().await.expect("the runtime lists its tasks");
                    if self.stopped.contains(id) {
                        for t in listed {
                            let _ = rt.remove(&t.labels.task_id).await;
                        }
                        n += rt.list().await.expect("the runtime lists its tasks").len();
                    } else {
                        n += listed.len();
                    }
                }
                left.set(n);
                n == 0
            })
            .await;
        assert!(
            gone,
            "timed out waiting for every task gone from every node: {} left",
            left.get()
        );
    }

    /// Stops every node up, the workers first.
    pub async fn shutdown(self) {
        for w in self.workers {
            w.shutdown().await;
        }
        for m in self.managers {
            m.shutdown().await;
        }
    }

    /// Removes `service`, waits [`CLEAN_UP`](Self::CLEAN_UP) at most for its
    /// tasks to go from every node, and stops every node.
    ///
    /// # Panics
    ///
    /// When the service cannot be removed or tasks are left.
    pub async fn remove_and_shutdown(self, service: &str) {
        self.control()
            .remove_service(service)
            .await
            .unwrap_or_else(|e| panic!("service rm {service}: {e}"));
        self.until_no_tasks(Self::CLEAN_UP).await;
        self.shutdown().await;
    }
}
