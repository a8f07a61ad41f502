//! The dispatcher protocol: what travels, postcard-encoded, in the `Payload`s of
//! the Dispatcher service.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::Id;
use swarm_core::types::{NodeDescription, Task, TaskStatus};

use crate::error::{Error, Result};

/// Opens a session (the first message of `Session`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// What the node reports about itself.
    pub description: NodeDescription,
    /// The IP address the node advertises (its `--advertise-addr`); empty: the
    /// address its connection comes from is recorded.
    pub addr: String,
}

/// A message of the session stream, manager to node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionMessage {
    /// The session is open.
    Started {
        /// The session's ID; heartbeats and status updates carry it.
        session_id: String,
        /// How often to send heartbeats.
        heartbeat_period: Duration,
        /// Every manager's address, to move to another if this one dies.
        managers: Vec<String>,
    },
    /// Tasks assigned to the node. The first is the complete set (`full`); later
    /// ones carry only what changed.
    Assignments {
        /// Whether `updated` is the complete set (anything else is removed).
        full: bool,
        /// New or changed tasks.
        updated: Vec<Task>,
        /// Tasks no longer assigned to the node.
        removed: Vec<Id>,
    },
    /// The manager list changed.
    Managers(Vec<String>),
    /// The routing mesh's backends changed (every node gets the whole view).
    Ingress(std::sync::Arc<crate::views::ingress::IngressView>),
    /// The overlay networks' tasks and services changed (every node gets the
    /// whole view).
    Networks(std::sync::Arc<crate::views::network::NetworkView>),
}

/// A heartbeat, node to manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The session.
    pub session_id: String,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// When to send the next one.
    pub period: Duration,
}

/// Task status changes, node to manager, batched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusBatch {
    /// The session.
    pub session_id: String,
    /// Each task's new status, oldest first.
    pub updates: Vec<(Id, TaskStatus)>,
}

/// Encodes a protocol message.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_stdvec(msg).expect("protocol messages always serialise")
}

/// Decodes a protocol message; malformed bytes are an `InvalidArgument`.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::InvalidArgument(format!("malformed dispatcher message: {e}")))
}
