//! Runtimes for Swarm workers: the [`Runtime`] trait, the task state machine every
//! runtime shares, a Docker Engine runtime and a process runtime.
//!
//! A worker runs the tasks assigned to it through a [`Runtime`]: a trait with a
//! task's lifecycle verbs (prepare, create, start, wait, stop, remove), inspect,
//! list (so a restarted agent adopts what still runs) and logs. Two ship here:
//!
//! - [`DockerRuntime`], the reference: containers on a Docker Engine (bollard;
//!   `DOCKER_HOST` or the local socket), named and labelled as Docker's swarm mode
//!   names them;
//! - [`ProcessRuntime`], the embedded default where there is no Docker: a task's
//!   command runs as a process group of the host, its output in log files.
//!
//! The agent does not sequence the verbs itself: [`drive`] walks a task through
//! ACCEPTED → PREPARING → READY → STARTING → RUNNING → COMPLETE / FAILED / SHUTDOWN
//! / REJECTED on any runtime, turning errors into the statuses docker users know
//! (`No such image: <image>`, `task: non-zero exit (N)`). A host with its own
//! runtime checks it with the [`conformance`] suite. Tests of code that drives a
//! runtime use the fakes of `testing` (feature `testing`): a scripted runtime
//! and an image cache over any runtime.
//!
//! ```
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use swarm_core::types::{Annotations, Task, TaskState};
//! use swarm_core::{Id, SystemClock};
//! use swarm_runtime::{LogOptions, ProcessRuntime, Runtime, drive};
//! use tokio::sync::watch;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let state = tempfile::tempdir()?;
//! let runtime: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new(state.path())?);
//!
//! // A task as the dispatcher hands it to a worker.
//! let mut task = Task {
//!     id: Id::from("greeter-1"),
//!     slot: 1,
//!     service_annotations: Annotations::named("greeter"),
//!     desired_state: TaskState::Running,
//!     ..Default::default()
//! };
//! task.spec.container.command = vec!["/bin/sh".into(), "-c".into()];
//! task.spec.container.args = vec!["echo hello; exit 3".into()];
//!
//! // Drive it to its end, seeing every status the agent would report.
//! let (_desired, desired_rx) = watch::channel(TaskState::Running);
//! let mut states = Vec::new();
//! let task = drive(runtime.as_ref(), &SystemClock, task, desired_rx, |s| states.push(s.state)).await;
//! use TaskState::*;
//! assert_eq!(states, [Accepted, Preparing, Ready, Starting, Running, Failed]);
//! assert_eq!(task.status.err, "task: non-zero exit (3)");
//!
//! // Its output.
//! let mut logs = runtime.logs("greeter-1", LogOptions::default()).await?;
//! assert_eq!(&logs.next().await.unwrap()?.data[..], b"hello\n");
//!
//! // An agent that restarts finds its tasks again, then cleans up.
//! let restarted = ProcessRuntime::new(state.path())?;
//! assert_eq!(restarted.list().await?[0].labels.task_id, "greeter-1");
//! restarted.remove("greeter-1").await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod conformance;
mod docker;
mod error;
mod machine;
mod process;
mod runtime;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use docker::{DEFAULT_PULL_TIMEOUT, DockerRuntime, PullPolicy};
pub use error::{Error, Result};
pub use machine::{MAX_TEMPORARY_RETRIES, Step, advance, drive, plan};
pub use process::ProcessRuntime;
pub use runtime::{
    ContainerState, DEFAULT_STOP_GRACE, Inspection, LABEL_NODE_ID, LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME, LABEL_TASK_ID, LABEL_TASK_NAME, LogChunk, LogChunks, LogOptions, LogStream,
    Runtime, TaskLabels, container_name, has_overlay, host_ports, stop_grace, task_name,
};
