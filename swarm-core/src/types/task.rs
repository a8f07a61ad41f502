//! Tasks: one scheduled unit of a service, and the task state machine.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::common::{Annotations, Meta, Version};
use super::network::Network;
use super::service::{Endpoint, PortConfig, TaskSpec};
use crate::id::Id;
use crate::time::Timestamp;

/// Task states in SwarmKit's order. Both a task's observed state and its desired
/// state only move forward in this order; the store refuses a move back.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created by the orchestrator.
    #[default]
    New,
    /// Resources allocated; waiting for the scheduler.
    Pending,
    /// Placed on a node.
    Assigned,
    /// The node's agent took it.
    Accepted,
    /// The runtime is preparing it (pulling the image, creating the container).
    Preparing,
    /// Prepared, ready to start.
    Ready,
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Exited successfully.
    Complete,
    /// Stopped on request.
    Shutdown,
    /// Exited with an error.
    Failed,
    /// The node refused it (e.g. no such image).
    Rejected,
    /// Marked for removal (desired state only).
    Remove,
    /// The node it ran on is gone.
    Orphaned,
}

impl TaskState {
    /// Every state, in order.
    pub const ALL: [TaskState; 14] = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Remove,
        TaskState::Orphaned,
    ];

    /// The lowercase name the Docker API uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// Whether the task has stopped for good (COMPLETE and everything after it).
    pub fn is_terminal(&self) -> bool {
        *self >= TaskState::Complete
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| crate::Error::InvalidArgument(format!("invalid task state {s:?}")))
    }
}

/// What the runtime says about the container of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Container ID (or a process runtime's handle).
    pub container_id: String,
    /// Process ID.
    pub pid: i32,
    /// Exit code, once it ended.
    pub exit_code: i32,
}

/// Ports a task actually got (host-mode publishing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// The ports.
    pub ports: Vec<PortConfig>,
}

/// The observed state of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// When this status was observed.
    pub timestamp: Timestamp,
    /// The state.
    pub state: TaskState,
    /// Short human-readable description, e.g. `started`.
    pub message: String,
    /// The error, if the task failed or was rejected, e.g.
    /// `No such image: redis:3.0.7` or `task: non-zero exit (1)`.
    pub err: String,
    /// The container, once there is one.
    pub container_status: Option<ContainerStatus>,
    /// Host-published ports.
    pub port_status: Option<PortStatus>,
    /// Which node applied this status.
    pub applied_by: Id,
    /// When it was applied.
    pub applied_at: Timestamp,
}

/// A task's attachment to a network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The network (a copy, so the agent needs no other lookup).
    pub network: Arc<Network>,
    /// Addresses of the task on it, CIDR.
    pub addresses: Vec<String>,
    /// DNS aliases.
    pub aliases: Vec<String>,
}

/// One unit of work of a service, placed on one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The task ID.
    pub id: Id,
    /// Version and times.
    pub meta: Meta,
    /// What to run: a snapshot of the service's task template.
    pub spec: TaskSpec,
    /// The service spec version the task was made from.
    pub spec_version: Option<Version>,
    /// The service (empty for a task that belongs to none).
    pub service_id: Id,
    /// Slot of a replicated service (1-based); 0 for global services.
    pub slot: u64,
    /// The node it is assigned to (empty until scheduled; set at creation for
    /// global services).
    pub node_id: Id,
    /// Task name and labels (the name is `<service>.<slot>` or `<service>.<node>`).
    pub annotations: Annotations,
    /// The service's annotations at creation.
    pub service_annotations: Annotations,
    /// Observed state.
    pub status: TaskStatus,
    /// Desired state: RUNNING (or READY for start-first updates) while wanted,
    /// then SHUTDOWN, REMOVE...
    pub desired_state: TaskState,
    /// Network attachments.
    pub networks: Vec<NetworkAttachment>,
    /// The service's endpoint when the task was made.
    pub endpoint: Option<Endpoint>,
    /// Job run this task belongs to.
    pub job_iteration: Option<Version>,
}
