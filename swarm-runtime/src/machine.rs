//! The task state machine every runtime shares.
//!
//! [`plan`] is the pure core: from a task's observed and desired state it picks the
//! next [`Step`]. [`advance`] performs that step on a [`Runtime`] and returns the
//! task's next [`TaskStatus`]; [`drive`] loops over `advance` until the task ends,
//! following desired-state changes. The worker agent runs one `drive` per task.
//!
//! ```text
//! ACCEPTED → PREPARING → READY → STARTING → RUNNING → COMPLETE | FAILED
//!     (prepare fails: REJECTED)   (start fails: FAILED)   (desired SHUTDOWN: SHUTDOWN)
//! ```

use std::time::Duration;

use swarm_core::types::{ContainerStatus, PortStatus, Task, TaskState, TaskStatus};
use swarm_core::{Clock, Timestamp};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// What to do next with a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Take the task: → ACCEPTED.
    Accept,
    /// Announce preparation: → PREPARING.
    BeginPrepare,
    /// Prepare the image and create the task: → READY (or REJECTED).
    Prepare,
    /// Announce the start: → STARTING.
    BeginStart,
    /// Start the task: → RUNNING (or FAILED).
    Start,
    /// Wait for it to exit: → COMPLETE or FAILED.
    Wait,
    /// Stop it (if it was created): → SHUTDOWN.
    Shutdown,
    /// Nothing until the desired state changes (READY held by a start-first update).
    Hold,
    /// The task has ended; nothing more to do.
    Done,
}

/// The next step for a task whose observed state is `observed` and whose desired
/// state is `desired`. Pure: the whole state machine is this table.
pub fn plan(observed: TaskState, desired: TaskState) -> Step {
    if observed.is_terminal() {
        return Step::Done;
    }
    if desired > TaskState::Running {
        return Step::Shutdown;
    }
    match observed {
        TaskState::New | TaskState::Pending | TaskState::Assigned => Step::Accept,
        TaskState::Accepted => Step::BeginPrepare,
        TaskState::Preparing => Step::Prepare,
        TaskState::Ready if desired < TaskState::Running => Step::Hold,
        TaskState::Ready => Step::BeginStart,
        TaskState::Starting => Step::Start,
        _ => Step::Wait,
    }
}

fn status(clock: &dyn Clock, task: &Task, state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        timestamp: clock.now(),
        state,
        message: message.to_string(),
        err: String::new(),
        container_status: task.status.container_status.clone(),
        port_status: task.status.port_status.clone(),
        applied_by: task.status.applied_by.clone(),
        applied_at: Timestamp::ZERO,
    }
}

/// Performs the next step of `task` (see [`plan`]) on `runtime` and returns the
/// task's new status, or `None` when there is nothing to do ([`Step::Hold`],
/// [`Step::Done`]).
///
/// Errors that end the task become statuses: REJECTED or FAILED (see
/// [`Error::task_state`]) with the error's text in `err`, e.g. `No such image: x` or
/// `task: non-zero exit (1)`. Only temporary errors ([`Error::is_temporary`]) are
/// returned as `Err`, for the caller to retry.
///
/// A RUNNING task's step waits for it to exit; drop the future to stop waiting
/// (when the desired state changes) and call `advance` again.
pub async fn advance(
    runtime: &dyn Runtime,
    clock: &dyn Clock,
    task: &Task,
) -> Result<Option<TaskStatus>> {
    let step = plan(task.status.state, task.desired_state);
    let fail = |e: Error, message: &str| -> Result<Option<TaskStatus>> {
        if e.is_temporary() {
            return Err(e);
        }
        let mut s = status(clock, task, e.task_state(), message);
        s.err = e.to_string();
        Ok(Some(s))
    };
    let next = match step {
        Step::Done | Step::Hold => return Ok(None),
        Step::Accept => status(clock, task, TaskState::Accepted, "accepted"),
        Step::BeginPrepare => status(clock, task, TaskState::Preparing, "preparing"),
        Step::BeginStart => status(clock, task, TaskState::Starting, "starting"),
        Step::Prepare => {
            if let Err(e) = runtime.prepare(task).await {
                return fail(e, "preparing failed");
            }
            let container = match runtime.create(task).await {
                Ok(c) => c,
                Err(Error::AlreadyExists { .. }) => match runtime.inspect(&task.id).await {
                    Ok(i) => i.container,
                    Err(e) => return fail(e, "preparing failed"),
                },
                Err(e) => return fail(e, "preparing failed"),
            };
            let mut s = status(clock, task, TaskState::Ready, "prepared");
            s.container_status = Some(container);
            s
        }
        Step::Start => {
            if let Err(e) = runtime.start(&task.id).await {
                return fail(e, "starting failed");
            }
            let mut s = status(clock, task, TaskState::Running, "started");
            match runtime.inspect(&task.id).await {
                Ok(i) => {
                    s.container_status = Some(i.container);
                    s.port_status = (!i.ports.is_empty()).then_some(PortStatus { ports: i.ports });
                }
                Err(e) => return fail(e, "started"),
            }
            s
        }
        Step::Wait => {
            let code = match runtime.wait(&task.id).await {
                Ok(code) => code,
                Err(e) => return fail(e, "started"),
            };
            let mut s = if code == 0 {
                status(clock, task, TaskState::Complete, "finished")
            } else {
                let mut s = status(clock, task, TaskState::Failed, "started");
                s.err = Error::NonZeroExit { code }.to_string();
                s
            };
            let container = s
                .container_status
                .get_or_insert_with(ContainerStatus::default);
            container.exit_code = code;
            container.pid = 0;
            s
        }
        Step::Shutdown => {
            match runtime.stop(&task.id, None).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return fail(e, "shutdown failed"),
            }
            let mut s = status(clock, task, TaskState::Shutdown, "shutdown");
            if let Ok(i) = runtime.inspect(&task.id).await
                && let Some(code) = i.exit_code
            {
                let container = s
                    .container_status
                    .get_or_insert_with(ContainerStatus::default);
                container.exit_code = code;
                container.pid = 0;
            }
            s
        }
    };
    Ok(Some(next))
}

/// How many temporary errors in a row [`drive`] retries before it fails the task.
pub const MAX_TEMPORARY_RETRIES: u32 = 8;

/// Drives `task` to its end: calls [`advance`] until the task reaches a terminal
/// state, reporting every new status to `report` (and storing it in `task`).
/// `desired` carries the desired state; a change interrupts a wait or a hold, so a
/// SHUTDOWN stops a running task. Temporary errors are retried with a backoff
/// (100 ms doubling to 5 s); after [`MAX_TEMPORARY_RETRIES`] in a row the task
/// FAILS with the error. Returns the task with its final status. A task held READY
/// returns when `desired` is closed.
pub async fn drive(
    runtime: &dyn Runtime,
    clock: &dyn Clock,
    mut task: Task,
    mut desired: watch::Receiver<TaskState>,
    mut report: impl FnMut(&TaskStatus) + Send,
) -> Task {
    let mut failures = 0u32;
    let mut open = true;
    loop {
        task.desired_state = task.desired_state.max(*desired.borrow_and_update());
        let step = plan(task.status.state, task.desired_state);
        if step == Step::Done {
            return task;
        }
        let outcome = tokio::select! {
            r = advance(runtime, clock, &task) => Some(r),
            changed = desired.changed(), if open && matches!(step, Step::Wait | Step::Hold) => {
                open = changed.is_ok();
                None
            }
        };
        match outcome {
            None => continue,
            Some(Ok(Some(s))) => {
                failures = 0;
                report(&s);
                task.status = s;
            }
            Some(Ok(None)) => {
                if !open {
                    return task;
                }
                open = desired.changed().await.is_ok();
            }
            Some(Err(e)) => {
                failures += 1;
                if failures > MAX_TEMPORARY_RETRIES {
                    let mut s = status(clock, &task, TaskState::Failed, "runtime unavailable");
                    s.err = e.to_string();
                    report(&s);
                    task.status = s;
                    return task;
                }
                let backoff = Duration::from_millis(100 << (failures - 1).min(6));
                tracing::warn!(task = %task.id, error = %e, "temporary runtime error; retrying");
                tokio::time::sleep(backoff.min(Duration::from_secs(5))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Script, ScriptedRuntime};
    use TaskState::*;

    #[test]
    fn walks_forward_while_running_is_wanted() {
        assert_eq!(plan(Assigned, Running), Step::Accept);
        assert_eq!(plan(Accepted, Running), Step::BeginPrepare);
        assert_eq!(plan(Preparing, Running), Step::Prepare);
        assert_eq!(plan(Ready, Running), Step::BeginStart);
        assert_eq!(plan(Starting, Running), Step::Start);
        assert_eq!(plan(Running, Running), Step::Wait);
    }

    #[test]
    fn ready_is_held_for_start_first_updates() {
        assert_eq!(plan(Ready, Ready), Step::Hold);
        assert_eq!(plan(Preparing, Ready), Step::Prepare);
    }

    #[test]
    fn shutdown_wins_and_terminal_states_are_final() {
        for observed in TaskState::ALL {
            for desired in [Shutdown, Remove] {
                let want = if observed.is_terminal() {
                    Step::Done
                } else {
                    Step::Shutdown
                };
                assert_eq!(plan(observed, desired), want, "{observed} -> {desired}");
            }
        }
        for terminal in [Complete, Shutdown, Failed, Rejected, Orphaned] {
            assert_eq!(plan(terminal, Running), Step::Done);
        }
    }

    #[test]
    fn every_state_pair_has_a_step() {
        // The table is total: no pair panics, and non-terminal observed states never
        // report Done.
        for observed in TaskState::ALL {
            for desired in TaskState::ALL {
                let step = plan(observed, desired);
                assert_eq!(step == Step::Done, observed.is_terminal());
            }
        }
    }

    /// A runtime whose `start` fails `unavailable` times with a temporary error
    /// before it works, and whose task then exits with `exit_code`.
    fn scripted(unavailable: u32, exit_code: i32) -> ScriptedRuntime {
        ScriptedRuntime::new().otherwise(
            Script::new()
                .start_unavailable(unavailable, "engine restarting")
                .exit_at_once(exit_code),
        )
    }

    fn new_task() -> Task {
        Task {
            id: swarm_core::Id::from("t"),
            desired_state: Running,
            status: TaskStatus {
                state: Assigned,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn run(rt: &ScriptedRuntime) -> (Task, Vec<TaskState>) {
        let clock = swarm_core::ManualClock::new(Timestamp::ZERO);
        let (_tx, rx) = watch::channel(Running);
        let mut seen = Vec::new();
        let task = drive(rt, &clock, new_task(), rx, |s| seen.push(s.state)).await;
        (task, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_errors_are_retried_then_fail_the_task() {
        let (task, seen) = run(&scripted(3, 0)).await;
        assert_eq!(
            seen,
            [Accepted, Preparing, Ready, Starting, Running, Complete]
        );
        let container = task.status.container_status.unwrap();
        assert_eq!(
            (container.container_id.as_str(), container.exit_code),
            ("t", 0),
            "the runtime's container (named by task ID) and its exit code"
        );

        let (task, seen) = run(&scripted(MAX_TEMPORARY_RETRIES + 1, 0)).await;
        assert_eq!(seen.last(), Some(&Failed));
        assert_eq!(task.status.message, "runtime unavailable");
        assert_eq!(task.status.err, "runtime unavailable: engine restarting");
    }

    #[tokio::test]
    async fn errors_become_statuses() {
        let rt =
            ScriptedRuntime::new().otherwise(Script::new().fail_prepare(|_| Error::NoSuchImage {
                image: "redis:3.0.7".into(),
            }));
        let (task, seen) = run(&rt).await;
        assert_eq!(seen, [Accepted, Preparing, Rejected]);
        assert_eq!(task.status.err, "No such image: redis:3.0.7");
        assert_eq!(task.status.timestamp, Timestamp::ZERO, "the injected clock");

        let mut t = new_task();
        t.status.state = Running;
        let clock = swarm_core::ManualClock::new(Timestamp::ZERO);
        let rt = scripted(0, 2);
        rt.create(&t).await.unwrap();
        rt.start(&t.id).await.unwrap();
        let s = advance(&rt, &clock, &t).await.unwrap().unwrap();
        assert_eq!(
            (s.state, s.err.as_str()),
            (Failed, "task: non-zero exit (2)")
        );
        assert_eq!(s.container_status.unwrap().exit_code, 2);
        t.status.state = Complete;
        assert_eq!(advance(&scripted(0, 0), &clock, &t).await.unwrap(), None);
    }
}
