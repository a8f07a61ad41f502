//! The worker side of a node: the task controllers over the node's [`Runtime`]
//! ([`Agent`], here), the dispatcher session (`session`), the worker node
//! (`worker`), the node's network plane (`netplane`) and routing mesh (`mesh`),
//! and the log relay (`logs`). It may use `views`, `rpc`, `pki` and `state`
//! (and the crate's errors), never `manager`: the manager side uses it, not the
//! reverse.
//!
//! The [`Agent`] runs the tasks the dispatcher assigns to this node, one
//! controller per task over the node's [`Runtime`], and reports every status
//! change (ACCEPTED → PREPARING → READY → STARTING → RUNNING → COMPLETE / FAILED /
//! SHUTDOWN / REJECTED) on a channel the dispatcher session drains.
//!
//! After a restart the agent adopts the tasks its runtime still runs instead of
//! starting them again, and removes what the swarm no longer assigns to it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use swarm_core::types::{ContainerStatus, Task, TaskState, TaskStatus};
use swarm_core::{Clock, Id};
use swarm_runtime::{ContainerState, Inspection, Runtime, drive};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::agent::netplane::{NetPlane, NetRuntime};

pub(crate) mod logs;
pub(crate) mod mesh;
pub(crate) mod netplane;
pub(crate) mod run;
pub(crate) mod session;
pub(crate) mod worker;

/// A status change of one task, for the dispatcher.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    /// The task.
    pub task_id: Id,
    /// Its new status.
    pub status: TaskStatus,
}

struct Controller {
    desired: watch::Sender<TaskState>,
    handle: JoinHandle<()>,
    /// The last status the controller reported.
    last: Arc<Mutex<Option<TaskStatus>>>,
}

/// The agent of one node. Drive it with [`assign`](Agent::assign) each time the
/// node's assignment set changes; read statuses from the receiver
/// [`Agent::new`] returns.
pub struct Agent {
    node_id: Id,
    runtime: Arc<dyn Runtime>,
    clock: Arc<dyn Clock>,
    controllers: HashMap<Id, Controller>,
    /// What the runtime held when the agent started, not yet claimed.
    adoptable: HashMap<Id, Inspection>,
    updates: mpsc::UnboundedSender<StatusUpdate>,
    /// The node's overlay networks (inert without root).
    plane: NetPlane,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node_id", &self.node_id)
            .field("runtime", &self.runtime.name())
            .field("tasks", &self.controllers.len())
            .finish()
    }
}

impl Agent {
    /// An agent for `node_id` over `runtime`. Lists what the runtime already runs
    /// for this node (for adoption); fails if the runtime cannot be listed.
    /// Tasks labelled with another node are not this agent's: several nodes may
    /// share one Docker Engine (swarmd processes on one machine).
    ///
    /// When the process runs as root, the agent runs the node's overlay
    /// networks ([`NetPlane::new`], over the kernel's VXLAN): tasks on them get
    /// their interfaces, DNS and VIPs through a [`NetRuntime`] around `runtime`.
    /// [`Agent::with_plane`] gives it another plane, or none.
    #[cfg(test)]
    pub async fn new(
        node_id: Id,
        runtime: Arc<dyn Runtime>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Agent, mpsc::UnboundedReceiver<StatusUpdate>), swarm_runtime::Error> {
        Agent::with_plane(node_id, runtime, clock, NetPlane::new).await
    }

    /// [`Agent::new`] with the network plane `plane` makes for the node once the
    /// runtime is listed: e.g. `|id| NetPlane::with_overlay(id, factory)` for
    /// another overlay, or `|_| NetPlane::disabled()` for none (tasks on overlay
    /// networks then stay on the host's network). An enabled plane wraps
    /// `runtime` in a [`NetRuntime`].
    pub async fn with_plane(
        node_id: Id,
        runtime: Arc<dyn Runtime>,
        clock: Arc<dyn Clock>,
        plane: impl FnOnce(&Id) -> NetPlane,
    ) -> Result<(Agent, mpsc::UnboundedReceiver<StatusUpdate>), swarm_runtime::Error> {
        let adoptable = runtime
            .list()
            .await?
            .into_iter()
            .filter(|i| i.labels.node_id == node_id)
            .map(|i| (Id::from(i.labels.task_id.as_str()), i))
            .collect();
        let (updates, rx) = mpsc::unbounded_channel();
        let plane = plane(&node_id);
        let runtime: Arc<dyn Runtime> = if plane.enabled() {
            Arc::new(NetRuntime::new(runtime, plane.clone()))
        } else {
            runtime
        };
        Ok((
            Agent {
                node_id,
                runtime,
                plane,
                clock,
                controllers: HashMap::new(),
                adoptable,
                updates,
            },
            rx,
        ))
    }

    /// The node's runtime as the agent drives it (with the overlay networks of
    /// its [`NetPlane`] when enabled): the one that knows where a task is reached.
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    /// Takes the leader's latest view of the overlay networks.
    pub fn set_networks(&self, view: Arc<crate::views::network::NetworkView>) {
        self.plane.set_view(view);
    }

    /// Makes the node run exactly `tasks` (the complete set assigned to it):
    /// starts controllers for new tasks (adopting what the runtime already runs),
    /// passes desired-state changes on, and stops and removes tasks that are no
    /// longer assigned, and anything the runtime holds that the swarm does not
    /// assign (orphans from before a restart).
    pub fn assign(&mut self, tasks: &[Task]) {
        let assigned: HashMap<&Id, &Task> = tasks.iter().map(|t| (&t.id, t)).collect();
        for task in tasks {
            if let Some(c) = self.controllers.get(&task.id) {
                c.desired.send_if_modified(|d| {
                    let raise = task.desired_state > *d;
                    if raise {
                        *d = task.desired_state;
                    }
                    raise
                });
                continue;
            }
            let adopted = self.adoptable.remove(&task.id);
            if task.status.state.is_terminal() && adopted.is_none() {
                // Ended before this agent saw it; nothing runs.
                continue;
            }
            if let Some(netns) = adopted.as_ref().and_then(|i| i.netns.clone())
                && self.plane.enabled()
            {
                // Its interfaces are in place: serve its DNS and VIPs again.
                let (plane, t) = (self.plane.clone(), task.clone());
                tokio::spawn(async move {
                    if let Err(e) = plane.attach(&t, &netns, false).await {
                        tracing::warn!(task = %t.id, error = %e, "could not adopt the task's overlay networks");
                    }
                });
            }
            let task = resume_point(task.clone(), adopted.as_ref());
            self.spawn(task);
        }
        let gone: Vec<Id> = self
            .controllers
            .keys()
            .filter(|id| !assigned.contains_key(id))
            .cloned()
            .collect();
        for id in gone {
            let c = self.controllers.remove(&id).expect("listed");
            c.desired.send_replace(TaskState::Remove);
            let runtime = self.runtime.clone();
            tokio::spawn(async move {
                let _ = c.handle.await;
                if let Err(e) = runtime.remove(&id).await {
                    tracing::warn!(task = %id, error = %e, "could not remove a task that is no longer assigned");
                }
            });
        }
        for (id, _) in std::mem::take(&mut self.adoptable) {
            if assigned.contains_key(&id) {
                continue;
            }
            let runtime = self.runtime.clone();
            tracing::info!(task = %id, "removing a task this node is no longer assigned");
            tokio::spawn(async move {
                if let Err(e) = runtime.remove(&id).await {
                    tracing::warn!(task = %id, error = %e, "could not remove an orphaned task");
                }
            });
        }
    }

    fn spawn(&mut self, task: Task) {
        let key = task.id.clone();
        let (desired_tx, desired_rx) = watch::channel(task.desired_state);
        let (runtime, clock, updates, id) = (
            self.runtime.clone(),
            self.clock.clone(),
            self.updates.clone(),
            task.id.clone(),
        );
        let last = Arc::new(Mutex::new(None));
        let last_reported = last.clone();
        let handle = tokio::spawn(async move {
            let report = |s: &TaskStatus| {
                *last_reported.lock() = Some(s.clone());
                let _ = updates.send(StatusUpdate {
                    task_id: id.clone(),
                    status: s.clone(),
                });
            };
            drive(runtime.as_ref(), clock.as_ref(), task, desired_rx, report).await;
        });
        self.controllers.insert(
            key,
            Controller {
                desired: desired_tx,
                handle,
                last,
            },
        );
    }

    /// Reports again the last status of every task in `tasks` (the node's set as
    /// the swarm knows it) whose known state is behind what this node reported:
    /// a status sent to a manager that lost its leadership before writing it is
    /// otherwise never written. Call it with the complete set a new session
    /// starts with; states only move forward, so a repeat is harmless.
    pub fn report_behind(&self, tasks: &[Task]) {
        for task in tasks {
            let Some(c) = self.controllers.get(&task.id) else {
                continue;
            };
            let last = c.last.lock().clone();
            if let Some(status) = last
                && status.state > task.status.state
            {
                let _ = self.updates.send(StatusUpdate {
                    task_id: task.id.clone(),
                    status,
                });
            }
        }
    }

    /// Stops the controllers without touching the tasks: they keep running, and a
    /// new agent on the same runtime adopts them.
    pub fn detach(self) {
        for (_, c) in self.controllers {
            c.handle.abort();
        }
    }
}

/// Where to pick a task up: from what the runtime holds if it holds the task,
/// else from the status the swarm knows.
fn resume_point(mut task: Task, adopted: Option<&Inspection>) -> Task {
    let Some(i) = adopted else { return task };
    let state = match i.state {
        // Prepared and created, never started.
        ContainerState::Created => TaskState::Ready,
        // Running, or exited while no agent watched: waiting reports how it ended.
        ContainerState::Running | ContainerState::Exited => TaskState::Running,
    };
    task.status.state = task.status.state.max(state);
    task.status.container_status = Some(ContainerStatus {
        ..i.container.clone()
    });
    task
}

#[cfg(test)]
mod tests;
