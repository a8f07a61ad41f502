//! The errors of swarm-raft.

/// Everything that can go wrong in a raft member.
///
/// `NotLeader`, `NoQuorum` and `Timeout` mean the operation may or may not take
/// effect later: retrying (on the leader, later) can help. `WouldLoseQuorum`,
/// `LastMember` and `NotMember` refuse a membership change and changed nothing.
/// `Storage` and `Raft` are fatal for this member: its disk or its state is broken.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// This member is not the leader and the operation must run on the leader.
    #[error("not the leader{}", leader.map(|l| format!(" (the leader is member {l})")).unwrap_or_default())]
    NotLeader {
        /// The leader, when known.
        leader: Option<u64>,
    },
    /// No leader could be elected or reached: this member is cut off from a quorum.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// The operation was not applied in time; it may still be applied later.
    #[error("timed out after {0:?} waiting for the cluster")]
    Timeout(std::time::Duration),
    /// Removing or demoting these members would leave fewer reachable voters than
    /// a quorum of the remaining configuration.
    #[error(
        "refused: the change would lose quorum ({reachable} of the remaining {remaining} voters are reachable, {needed} needed)"
    )]
    WouldLoseQuorum {
        /// Remaining voters reachable from the leader (itself included).
        reachable: usize,
        /// Voters left after the change.
        remaining: usize,
        /// A quorum of them.
        needed: usize,
    },
    /// The change would remove the last voting member.
    #[error("refused: member {0} is the last voting member")]
    LastMember(u64),
    /// Another membership change is still being applied; retry once it is.
    #[error("another membership change is in progress")]
    ChangeInProgress,
    /// The member named is not part of the group.
    #[error("member {0} is not a member of the raft group")]
    NotMember(u64),
    /// Invalid input (a configuration value, a member ID).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The member is stopped (shut down or its driver failed).
    #[error("the raft member is stopped")]
    Stopped,
    /// The durable log or snapshot files failed; the member stops.
    #[error("raft storage: {0}")]
    Storage(String),
    /// The consensus library refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The state machine refused a committed batch (stale version, taken name...).
    #[error(transparent)]
    Apply(#[from] swarm_core::Error),
}

impl RaftError {
    /// Whether the same call may succeed later without any change by the caller.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RaftError::NotLeader { .. }
                | RaftError::NoQuorum(_)
                | RaftError::Timeout(_)
                | RaftError::ChangeInProgress
        )
    }
}

impl From<raft_engine::Error> for RaftError {
    fn from(e: raft_engine::Error) -> Self {
        RaftError::Storage(e.to_string())
    }
}

impl From<std::io::Error> for RaftError {
    fn from(e: std::io::Error) -> Self {
        RaftError::Storage(e.to_string())
    }
}

impl From<RaftError> for swarm_core::Error {
    fn from(e: RaftError) -> Self {
        match e {
            RaftError::Apply(e) => e,
            RaftError::NotLeader { leader } => swarm_core::Error::NotLeader {
                leader: leader.map(|l| l.to_string()),
            },
            RaftError::InvalidArgument(m) => swarm_core::Error::InvalidArgument(m),
            other => swarm_core::Error::Unavailable(other.to_string()),
        }
    }
}

/// The result type of swarm-raft.
pub type Result<T, E = RaftError> = std::result::Result<T, E>;
