//! Runtime errors: what went wrong, whether a retry can help, and which task state
//! the failure puts the task in.

use swarm_core::types::TaskState;

/// The result of a runtime call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`Runtime`](crate::Runtime) call can fail with.
///
/// The agent asks two questions of an error: may a retry help
/// ([`Error::is_temporary`]), and, if not, in which state does the task end
/// ([`Error::task_state`]). The `Display` text is what `docker service ps` shows in
/// its ERROR column, so the texts docker users know are kept exactly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image is not on the node and could not be pulled. The task is REJECTED.
    #[error("No such image: {image}")]
    NoSuchImage {
        /// The image reference, as given in the task spec.
        image: String,
    },
    /// The task exited with a non-zero code. The task is FAILED.
    #[error("task: non-zero exit ({code})")]
    NonZeroExit {
        /// The exit code; a process killed by signal N exits with 128 + N.
        code: i32,
    },
    /// The spec cannot be run as given (an empty command for the process runtime, an
    /// unknown user, a malformed port). The task is REJECTED.
    #[error("invalid task spec: {field}: {reason}")]
    InvalidSpec {
        /// The spec field at fault, e.g. `container.user`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The runtime could not start the task (no such executable, permission denied,
    /// the engine refused to start the container). The message is the runtime's own.
    /// The task is FAILED, or REJECTED when `rejected` is set (the node can never run
    /// it, e.g. the executable does not exist).
    #[error("{message}")]
    StartFailed {
        /// The runtime's message, e.g. `exec: "nope": executable file not found`.
        message: String,
        /// Whether the failure is permanent on this node.
        rejected: bool,
    },
    /// The task exited but its exit code is lost: it was not a child of this
    /// process (the agent restarted while it ran). The task is FAILED.
    #[error("task: exit status unknown (it exited while no runtime watched it)")]
    ExitUnknown {
        /// The task ID.
        task_id: String,
    },
    /// The runtime knows no task with this ID (never created, or removed).
    #[error("no such task: {task_id}")]
    NotFound {
        /// The task ID.
        task_id: String,
    },
    /// A task with this ID already exists in the runtime.
    #[error("task {task_id} already exists")]
    AlreadyExists {
        /// The task ID.
        task_id: String,
    },
    /// The runtime does not offer this ability (e.g. logs).
    #[error("not supported by this runtime: {0}")]
    Unsupported(&'static str),
    /// The runtime (engine, socket) did not answer or failed on its side. A retry
    /// may help.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The engine answered with an error that fits no other variant.
    #[error("engine error ({status}): {message}")]
    Engine {
        /// HTTP status code from the engine.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// A local I/O failure (state directory, log files, signals).
    #[error("{context}: {source}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying the same call later may succeed: the engine was unreachable,
    /// returned a server error, or a local I/O call failed. Errors about the task
    /// itself (no such image, bad spec, non-zero exit) are not temporary.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Unavailable(_) | Error::Io { .. } => true,
            Error::Engine { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The terminal task state this error puts a task in when it is not retried:
    /// REJECTED when the node cannot run the task at all (no such image, invalid
    /// spec, permanent start failure), FAILED otherwise.
    pub fn task_state(&self) -> TaskState {
        match self {
            Error::NoSuchImage { .. } | Error::InvalidSpec { .. } => TaskState::Rejected,
            Error::StartFailed { rejected: true, .. } => TaskState::Rejected,
            _ => TaskState::Failed,
        }
    }

    /// An [`Error::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::NotFound`] for a task.
    pub(crate) fn not_found(task_id: &str) -> Error {
        Error::NotFound {
            task_id: task_id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_docker_users_know() {
        let e = Error::NoSuchImage {
            image: "redis:3.0.7".into(),
        };
        assert_eq!(e.to_string(), "No such image: redis:3.0.7");
        assert_eq!(e.task_state(), TaskState::Rejected);
        assert!(!e.is_temporary());

        let e = Error::NonZeroExit { code: 3 };
        assert_eq!(e.to_string(), "task: non-zero exit (3)");
        assert_eq!(e.task_state(), TaskState::Failed);
    }

    #[test]
    fn temporary_errors() {
        assert!(Error::Unavailable("socket".into()).is_temporary());
        assert!(
            Error::Engine {
                status: 500,
                message: "x".into()
            }
            .is_temporary()
        );
        assert!(
            !Error::Engine {
                status: 409,
                message: "x".into()
            }
            .is_temporary()
        );
        let start = Error::StartFailed {
            message: "exec failed".into(),
            rejected: true,
        };
        assert!(!start.is_temporary());
        assert_eq!(start.task_state(), TaskState::Rejected);
        assert_eq!(start.to_string(), "exec failed");
    }
}
