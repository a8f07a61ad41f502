//! The runtime conformance suite: the behaviour every [`Runtime`] must show, written
//! once. Swarm runs it on its process runtime and, against a real engine, on its
//! Docker runtime; a host runs it on its own runtime through a [`Harness`]:
//!
//! ```no_run
//! # async fn f(harness: &dyn swarm_runtime::conformance::Harness) {
//! use swarm_runtime::conformance::{Check, run};
//! for check in Check::ALL {
//!     if let Err(failure) = run(harness, check).await {
//!         panic!("{failure}");
//!     }
//! }
//! # }
//! ```
//!
//! Tasks run `/bin/sh -c <script>` with `echo`, `sleep` and `trap`, so the image
//! must hold a POSIX shell. Every check removes the tasks it made, pass or fail.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Error;
use crate::runtime::Runtime;
use checks::Ctx;

mod checks;

/// What the suite needs from the runtime under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new runtime instance over the node's state. Called again to play an agent
    /// that restarted: the new instance must adopt what the old one started.
    async fn runtime(&self) -> Arc<dyn Runtime>;
    /// An image the runtime can run, holding `/bin/sh`.
    fn image(&self) -> String;
    /// An image that is not on the node and cannot be pulled; `None` for a runtime
    /// that does not run images (the check then makes sure the image is recorded
    /// and does not stop the task).
    fn missing_image(&self) -> Option<String>;
    /// A prefix for task IDs and service names, so leftovers can be found.
    fn prefix(&self) -> String {
        "conformance".into()
    }
}

/// One check of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// create → CREATED, start → RUNNING with a pid, labels and listing; remove
    /// leaves nothing.
    Lifecycle,
    /// Through the state machine: exit 0 → COMPLETE, exit 3 → FAILED
    /// `task: non-zero exit (3)`.
    ExitCodes,
    /// A task that handles the stop signal exits by itself within the grace period.
    StopWithinGrace,
    /// A task that ignores the stop signal is killed when the grace period ends.
    KillAfterGrace,
    /// stdout and stderr, read after the exit and followed while running; the
    /// last lines of both (`tail`); line times, where kept, within the task's life.
    Logs,
    /// A new runtime instance lists a running task and stops and removes it.
    Adopt,
    /// Through the state machine: a RUNNING task whose desired state becomes
    /// SHUTDOWN is stopped and ends SHUTDOWN.
    DesiredShutdown,
    /// A missing image is REJECTED with `No such image: <image>`.
    MissingImage,
    /// A command that does not exist fails the task with a message naming it.
    BadCommand,
}

impl Check {
    /// Every check.
    pub const ALL: [Check; 9] = [
        Check::Lifecycle,
        Check::ExitCodes,
        Check::StopWithinGrace,
        Check::KillAfterGrace,
        Check::Logs,
        Check::Adopt,
        Check::DesiredShutdown,
        Check::MissingImage,
        Check::BadCommand,
    ];

    fn slug(self) -> &'static str {
        match self {
            Check::Lifecycle => "lifecycle",
            Check::ExitCodes => "exit",
            Check::StopWithinGrace => "stop",
            Check::KillAfterGrace => "kill",
            Check::Logs => "logs",
            Check::Adopt => "adopt",
            Check::DesiredShutdown => "shutdown",
            Check::MissingImage => "image",
            Check::BadCommand => "badcmd",
        }
    }
}

/// A failed check.
#[derive(Debug, thiserror::Error)]
#[error("conformance check {check:?} failed: {message}")]
pub struct Failure {
    /// The check.
    pub check: Check,
    /// What went wrong.
    pub message: String,
}

/// The longest a check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one check; the tasks it made are removed whatever the outcome.
pub async fn run(harness: &dyn Harness, check: Check) -> Result<(), Failure> {
    let mut ctx = Ctx {
        harness,
        check,
        runtime: harness.runtime().await,
        made: Vec::new(),
    };
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, ctx.body()).await;
    for id in std::mem::take(&mut ctx.made) {
        match ctx.runtime.remove(&id).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(task = %id, error = %e, "conformance cleanup"),
        }
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(Failure { check, message }),
        Err(_) => Err(Failure {
            check,
            message: format!("did not finish in {CHECK_TIMEOUT:?}"),
        }),
    }
}

/// Runs every check, in order; returns the failures.
pub async fn run_all(harness: &dyn Harness) -> Vec<Failure> {
    let mut failures = Vec::new();
    for check in Check::ALL {
        if let Err(f) = run(harness, check).await {
            failures.push(f);
        }
    }
    failures
}
