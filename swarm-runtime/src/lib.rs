//! Runtimes for Swarm workers.
#![deny(missing_docs)]

pub mod conformance;
mod docker;
mod error;
mod machine;
mod process;
mod runtime;

pub use docker::{DEFAULT_PULL_TIMEOUT, DockerRuntime, PullPolicy};
pub use error::{Error, Result};
pub use machine::{MAX_TEMPORARY_RETRIES, Step, advance, drive, plan};
pub use process::ProcessRuntime;
pub use runtime::{
    ContainerState, DEFAULT_STOP_GRACE, Inspection, LABEL_NODE_ID, LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME, LABEL_TASK_ID, LABEL_TASK_NAME, LogChunk, LogChunks, LogOptions, LogStream,
    Runtime, TaskLabels, container_name, host_ports, stop_grace, task_name,
};
