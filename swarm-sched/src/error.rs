//! The errors of swarm-sched.

/// What can go wrong in the scheduler.
///
/// `InvalidConstraint` is about the caller's input (a service spec): the control
/// API reports it as `InvalidArgument` at service create. `Store` comes from
/// writing assignments back; [`swarm_core::Error::is_retryable`] says whether a
/// later pass can succeed (e.g. after a leader change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A placement constraint does not parse; `expr` is the offending text.
    #[error("invalid constraint {expr:?}: {reason}")]
    InvalidConstraint {
        /// The constraint as the user wrote it.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing to the store failed.
    #[error(transparent)]
    Store(#[from] swarm_core::Error),
}

impl From<Error> for swarm_core::Error {
    /// Maps a bad constraint to `InvalidArgument` (what the control API returns)
    /// and passes store errors through.
    fn from(e: Error) -> swarm_core::Error {
        match e {
            Error::InvalidConstraint { .. } => swarm_core::Error::InvalidArgument(e.to_string()),
            Error::Store(e) => e,
        }
    }
}

/// The result type of swarm-sched.
pub type Result<T, E = Error> = std::result::Result<T, E>;
