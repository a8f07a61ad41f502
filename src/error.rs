//! The facade's errors: what the caller can fix, what a retry may fix, and what is
//! fatal.

use swarm_core::Kind;

/// An error from the control API, a manager, a worker or a node. The first
/// variants are the caller's to fix; [`Error::is_retryable`] says when trying
/// again may help.
///
/// ```
/// use swarm::Error;
///
/// let e = Error::NotLeader { leader: Some("192.0.2.1:2377".into()) };
/// assert!(e.is_retryable());
/// assert!(!Error::InvalidArgument("bad spec".into()).is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No such object. Fix the ID or name.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Kind of object.
        kind: Kind,
        /// The ID, name or prefix given.
        id: String,
    },
    /// The name is taken. Pick another.
    #[error("{0}")]
    NameConflict(String),
    /// The input is invalid; the message names the field at fault. Nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The object changed since it was read (its version is stale): read it again.
    #[error("{0}")]
    Conflict(String),
    /// The request is valid but the swarm's state does not allow it now (e.g.
    /// removing a node that is still up, demoting the last manager).
    #[error("{0}")]
    FailedPrecondition(String),
    /// This manager cannot commit; the leader may be elsewhere. Retry there or later.
    #[error("not the leader{}", leader.as_ref().map(|l| format!(" (the leader is {l})")).unwrap_or_default())]
    NotLeader {
        /// The leader, when known.
        leader: Option<String>,
    },
    /// The swarm cannot commit right now (no quorum, shutting down). Retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt state: not the caller's to fix.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether a retry, unchanged, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. } | Error::Unavailable(_) | Error::Conflict(_)
        )
    }
}

impl From<swarm_core::Error> for Error {
    fn from(e: swarm_core::Error) -> Error {
        use swarm_core::Error as E;
        match e {
            E::NotFound { kind, id } => Error::NotFound { kind, id },
            E::NameConflict { .. } | E::AlreadyExists { .. } => Error::NameConflict(e.to_string()),
            E::Conflict { .. } => Error::Conflict(e.to_string()),
            E::InvalidTransition { .. } | E::InvalidArgument(_) => {
                Error::InvalidArgument(match e {
                    E::InvalidArgument(m) => m,
                    other => other.to_string(),
                })
            }
            E::NotLeader { leader } => Error::NotLeader { leader },
            E::Unavailable(m) => Error::Unavailable(m),
            E::Codec { .. } => Error::Internal(e.to_string()),
        }
    }
}

impl From<crate::pki::CaError> for Error {
    fn from(e: crate::pki::CaError) -> Error {
        use crate::pki::CaError as C;
        match e {
            C::InvalidToken(_)
            | C::CaMismatch { .. }
            | C::TokenRejected
            | C::BadCsr(_)
            | C::BadCertificate(_) => Error::InvalidArgument(e.to_string()),
            C::Crypto(_) => Error::Internal(e.to_string()),
        }
    }
}

/// The facade's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
