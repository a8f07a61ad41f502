//! The errors of swarm-core.

use crate::id::Id;
use crate::store::Kind;
use crate::types::TaskState;

/// Everything that can go wrong in the store and the state machine.
///
/// The first group (`NotFound` … `InvalidTransition`) is about the caller's input:
/// fixing the input (re-reading, picking another name) fixes the error, and nothing
/// was changed. `NotLeader` and `Unavailable` come from a [`Proposer`](crate::Proposer):
/// retrying (against the leader, later) can help. `Codec` means bytes from outside
/// (a snapshot, a raft entry) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No object of that kind has that ID (or name or prefix).
    #[error("{kind} {id} not found")]
    NotFound {
        /// Kind of object looked for.
        kind: Kind,
        /// The ID, name or prefix given.
        id: String,
    },
    /// The name is taken by another object of the same kind (names compare
    /// case-insensitively).
    #[error("{kind} name {name:?} is already in use by {kind} {id}")]
    NameConflict {
        /// Kind of object.
        kind: Kind,
        /// The name asked for.
        name: String,
        /// The object holding it.
        id: Id,
    },
    /// An object with that ID exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// Kind of object.
        kind: Kind,
        /// The ID.
        id: Id,
    },
    /// Optimistic concurrency: the update was made from a stale read. Read the
    /// object again and redo the change.
    #[error(
        "update out of sequence: {kind} {id} was read at version {read} but is at version {current}"
    )]
    Conflict {
        /// Kind of object.
        kind: Kind,
        /// The object.
        id: Id,
        /// The version the update carried (0 for a removal, which carries none).
        read: u64,
        /// The version in the store (0: the object was removed since).
        current: u64,
    },
    /// A task's observed or desired state would move backwards.
    #[error("task {id}: {field} cannot move back from {from} to {to}")]
    InvalidTransition {
        /// The task.
        id: Id,
        /// `status.state` or `desired_state`.
        field: &'static str,
        /// The state in the store.
        from: TaskState,
        /// The state asked for.
        to: TaskState,
    },
    /// The input is malformed; the message names the field at fault.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// This member cannot commit writes; the leader may be elsewhere.
    #[error("not the leader{}", leader.as_ref().map(|l| format!(" (the leader is {l})")).unwrap_or_default())]
    NotLeader {
        /// The leader, when known (node ID or address).
        leader: Option<String>,
    },
    /// The write could not be committed (no quorum, timeout, shutting down); it
    /// may or may not have been applied. Retry later.
    #[error("write not committed: {0}")]
    Unavailable(String),
    /// Bytes from outside could not be decoded.
    #[error("cannot decode {what}: {message}")]
    Codec {
        /// What was being decoded: `snapshot`, `batch`.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
}

impl Error {
    /// Whether the same call may succeed later without any change by the caller.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NotLeader { .. } | Error::Unavailable(_))
    }
}

/// The result type of swarm-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
