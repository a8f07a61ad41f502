//! The restart policy: whether and when a task that ended is replaced.

use std::sync::Arc;

use swarm_core::Timestamp;
use swarm_core::types::{RestartCondition, RestartPolicy, Task, TaskState};

use super::ended_by_itself;

/// What to do about a task that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Replace it now.
    Now,
    /// Replace it, starting the replacement at this time (the policy's delay).
    After(Timestamp),
    /// Do not replace it; the reason, for logs.
    Never(&'static str),
}

/// Decides for `task`, which ended (observed COMPLETE, FAILED, REJECTED, ...),
/// given the other tasks of its slot and the service's restart policy:
/// condition `none` never restarts, `on-failure` restarts all but a clean
/// completion, `any` restarts always; at most `max_attempts` restarts within
/// `window` (zero: ever), counted from the slot's history; the replacement starts
/// `delay` after `now`.
///
/// The count comes from the tasks the store still holds, so with the default
/// history retention (5 per slot) a `max_attempts` above 4 is not enforced past
/// what the history shows.
pub fn restart_decision(
    task: &Task,
    slot: &[Arc<Task>],
    policy: &RestartPolicy,
    now: Timestamp,
) -> RestartDecision {
    match policy.condition {
        RestartCondition::None => return RestartDecision::Never("restart condition is none"),
        RestartCondition::OnFailure if task.status.state == TaskState::Complete => {
            return RestartDecision::Never(
                "the task completed and the restart condition is on-failure",
            );
        }
        _ => {}
    }
    if policy.max_attempts > 0 {
        let since = if policy.window.is_zero() {
            Timestamp::ZERO
        } else {
            Timestamp::from_nanos_before(now, policy.window)
        };
        // Earlier tasks of the slot that ended by themselves within the window:
        // each was followed by a restart.
        let restarts = slot
            .iter()
            .filter(|t| t.id != task.id && ended_by_itself(t) && t.meta.created_at >= since)
            .count() as u64;
        if restarts >= policy.max_attempts {
            return RestartDecision::Never("the restart policy's max attempts are used up");
        }
    }
    if policy.delay.is_zero() {
        RestartDecision::Now
    } else {
        RestartDecision::After(now.add(policy.delay))
    }
}

trait Before {
    fn from_nanos_before(now: Timestamp, d: std::time::Duration) -> Timestamp;
}

impl Before for Timestamp {
    fn from_nanos_before(now: Timestamp, d: std::time::Duration) -> Timestamp {
        let total = now.seconds as i128 * 1_000_000_000 + now.nanos as i128 - d.as_nanos() as i128;
        Timestamp {
            seconds: total.div_euclid(1_000_000_000) as i64,
            nanos: total.rem_euclid(1_000_000_000) as u32,
        }
    }
}
