//! The rolling updater: replaces the tasks of a service whose task template
//! changed, slot by slot, as its `UpdateConfig` says (its `RollbackConfig` while
//! rolling back), and keeps the service's `UpdateStatus`.
//!
//! Everything it decides from is in the store, so a new leader resumes an update
//! where the old one stopped:
//!
//! - a slot (a node for global services) is *dirty* when its newest wanted task
//!   runs another template than the service's (`force_update` is part of it);
//! - a slot is *busy* while the task this update gave it has not reached RUNNING
//!   (or ended), and for `delay` after; at most `parallelism` slots are busy;
//! - a task of this update (current template, created since the update started)
//!   that ends by itself (COMPLETE, FAILED, REJECTED) before it ran, or within
//!   `monitor` of starting to run, is a failure; failures over `max_failure_ratio`
//!   of the slots trigger the failure action;
//! - the update completes `monitor` after the last slot settled (plus `delay`).
//!
//! Stop-first: the new task is created desired READY beside the old one, which is
//! shut down; the replicated/global supervisor starts it once the old one has
//! stopped. Start-first: the new task is created desired RUNNING; the supervisor
//! shuts the old one down once the new one runs.
//!
//! The one thing not in the store is when a task that has since ended started
//! running: the leader's loop keeps it in a [`RunHistory`]. A new leader starts
//! with an empty history, so a task that ended before it took over counts as
//! never having run (a failure), as the monitor window cannot be checked.

use std::collections::HashMap;
use std::sync::Arc;

use swarm_core::types::{
    Availability, FailureAction, Node, NodeState, Service, ServiceMode, Task, TaskState,
    UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};
use swarm_core::{Id, Tables, Timestamp};

use super::{Plan, ended_by_itself, group_tasks, is_wanted, new_task};

/// When tasks were seen to start running, as the leader's loop observed them
/// (a task that ended no longer shows it in the store).
#[derive(Clone, Debug, Default)]
pub struct RunHistory {
    since: HashMap<Id, Timestamp>,
}

impl RunHistory {
    /// An empty history.
    pub fn new() -> RunHistory {
        RunHistory::default()
    }

    /// Records a version of a task: if it is RUNNING, when it started to.
    pub fn observe(&mut self, task: &Task) {
        if task.status.state == TaskState::Running {
            let at = task.status.timestamp;
            self.since
                .entry(task.id.clone())
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
    }

    /// Forgets a deleted task.
    pub fn forget(&mut self, id: &Id) {
        self.since.remove(id);
    }

    /// When `task` started running, if it did and that was seen.
    pub fn running_since(&self, task: &Task) -> Option<Timestamp> {
        let seen = self.since.get(&task.id).copied();
        let now = (task.status.state == TaskState::Running).then_some(task.status.timestamp);
        match (seen, now) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Where one slot stands in the update.
struct Slot {
    /// The slot number (0 for global services).
    slot: u64,
    /// The node, for global services.
    node: Id,
    /// Its wanted tasks, newest first.
    wanted: Vec<Arc<Task>>,
    /// Its newest wanted task runs another template.
    dirty: bool,
    /// When the task this update gave it reached RUNNING or ended (None: not
    /// yet, or the update gave it no task).
    settled: Option<Timestamp>,
    /// The update gave it a task.
    touched: bool,
}

/// Plans the rolling update of `service` into `plan`, which holds what the
/// supervisor already planned for it from the same `view` (slots that plan
/// touches are left alone this time). A changed update status, or a rollback,
/// lands in `plan.services`; the time the next batch or the end of the monitor
/// period comes due in `plan.wake_at`.
pub fn plan_update(
    view: &Tables,
    service: &Service,
    history: &RunHistory,
    now: Timestamp,
    plan: &mut Plan,
) {
    if service.spec.mode.is_job() || service.pending_delete {
        return;
    }
    let status = service.update_status.clone().unwrap_or_default();
    if matches!(
        status.state,
        UpdateState::Paused | UpdateState::RollbackPaused
    ) {
        return;
    }
    let in_progress = matches!(
        status.state,
        UpdateState::Updating | UpdateState::RollbackStarted
    );
    let started = if in_progress {
        status.started_at.unwrap_or(Timestamp::ZERO)
    } else {
        now
    };
    let slots = slots(view, service, history, started);
    if !in_progress && !slots.iter().any(|s| s.dirty) {
        return;
    }
    let rolling_back = status.state == UpdateState::RollbackStarted;
    let cfg = if rolling_back {
        service.spec.rollback.clone()
    } else {
        service.spec.update.clone()
    }
    .unwrap_or_default();

    let mut status = if in_progress {
        status
    } else {
        UpdateStatus {
            state: UpdateState::Updating,
            started_at: Some(now),
            completed_at: None,
            message: "update in progress".into(),
        }
    };

    if cfg.failure_action != FailureAction::Continue
        && let Some(failed) = failure_over_ratio(view, service, history, &cfg, started, &slots)
    {
        let mut s = service.clone();
        // A rollback is never rolled back: it pauses. Without a previous spec
        // the update pauses too.
        if cfg.failure_action == FailureAction::Rollback
            && !rolling_back
            && let Some(prev) = s.previous_spec.take()
        {
            s.spec = prev;
            s.spec_version = s.previous_spec_version.take();
            status.state = UpdateState::RollbackStarted;
            status.message =
                format!("update rolled back due to failure or early termination of task {failed}");
            s.update_status = Some(status);
            tracing::info!(service = %s.spec.annotations.name, task = %failed, "update failed; rolling back");
            plan.services.push(s);
            return;
        }
        let what = if rolling_back { "rollback" } else { "update" };
        status.state = if rolling_back {
            UpdateState::RollbackPaused
        } else {
            UpdateState::Paused
        };
        status.message =
            format!("{what} paused due to failure or early termination of task {failed}");
        tracing::info!(service = %s.spec.annotations.name, task = %failed, "{what} paused");
        s.update_status = Some(status);
        plan.services.push(s);
        return;
    }

    // Busy slots: their new task has not settled, or settled less than `delay` ago.
    let mut busy = 0usize;
    for s in &slots {
        if !s.touched || s.dirty {
            continue;
        }
        match s.settled {
            None => busy += 1,
            Some(at) => {
                let free_at = at.add(cfg.delay);
                if now < free_at {
                    busy += 1;
                    plan.wake(free_at);
                }
            }
        }
    }
    let parallelism = match cfg.parallelism {
        0 => usize::MAX,
        p => usize::try_from(p).unwrap_or(usize::MAX),
    };
    let todo: Vec<&Slot> = slots.iter().filter(|s| s.dirty).collect();
    let mut free = parallelism.saturating_sub(busy);
    for s in &todo {
        if free == 0 {
            break;
        }
        if touched_by(plan, s) {
            continue;
        }
        replace(service, s, cfg.order, now, plan);
        free -= 1;
    }

    if todo.is_empty() && busy == 0 {
        let last = slots
            .iter()
            .filter(|s| s.touched)
            .filter_map(|s| s.settled)
            .max();
        let due = last.map_or(now, |at| at.add(cfg.delay).add(cfg.monitor));
        if now >= due {
            status.state = if rolling_back {
                UpdateState::RollbackCompleted
            } else {
                UpdateState::Completed
            };
            status.message = if rolling_back {
                "rollback completed"
            } else {
                "update completed"
            }
            .into();
            status.completed_at = Some(now);
            tracing::info!(service = %service.spec.annotations.name, "{}", status.message);
        } else {
            plan.wake(due);
        }
    }
    if service.update_status.as_ref() != Some(&status) {
        let mut s = service.clone();
        s.update_status = Some(status);
        plan.services.push(s);
    }
}

/// The service's slots (nodes, for global services) that hold wanted tasks, in
/// order, with where each stands in an update started at `started`.
fn slots(view: &Tables, service: &Service, history: &RunHistory, started: Timestamp) -> Vec<Slot> {
    let global = matches!(service.spec.mode, ServiceMode::Global);
    let groups = group_tasks(view, service, |t| {
        (
            t.slot,
            if global {
                t.node_id.clone()
            } else {
                Id::empty()
            },
        )
    });
    let target = &service.spec.task;
    let mut out = Vec::new();
    for ((slot, node), tasks) in groups {
        if !global && slot == 0 {
            continue;
        }
        // A global service's task on a node that takes no new tasks (paused,
        // down) is left as it is: its replacement could not start there.
        if global
            && !view.get::<Node>(&node).is_some_and(|n| {
                n.status.state == NodeState::Ready && n.spec.availability == Availability::Active
            })
        {
            continue;
        }
        let wanted: Vec<Arc<Task>> = tasks.iter().filter(|t| is_wanted(t)).cloned().collect();
        let Some(newest) = wanted.first() else {
            continue;
        };
        let dirty = newest.spec != *target;
        let ours: Vec<&Arc<Task>> = tasks
            .iter()
            .filter(|t| t.spec == *target && t.meta.created_at >= started)
            .collect();
        // When this update's task reached RUNNING, or ended.
        let settled = ours
            .iter()
            .filter_map(|t| {
                history
                    .running_since(t)
                    .or((t.status.state > TaskState::Running).then_some(t.status.timestamp))
            })
            .min();
        out.push(Slot {
            slot,
            node,
            dirty,
            settled,
            touched: !ours.is_empty(),
            wanted,
        });
    }
    out
}

/// The newest task of this update that failed within the monitor window, if the
/// failures are more than `max_failure_ratio` of the slots.
fn failure_over_ratio(
    view: &Tables,
    service: &Service,
    history: &RunHistory,
    cfg: &UpdateConfig,
    started: Timestamp,
    slots: &[Slot],
) -> Option<Id> {
    let target = &service.spec.task;
    let mut failed: Vec<Arc<Task>> = view
        .tasks_by_service(&service.id)
        .filter(|t| t.spec == *target && t.meta.created_at >= started && ended_by_itself(t))
        .filter(|t| {
            history
                .running_since(t)
                .is_none_or(|since| t.status.timestamp.since(since) <= cfg.monitor)
        })
        .collect();
    if failed.is_empty() {
        return None;
    }
    let ratio = failed.len() as f32 / slots.len().max(1) as f32;
    if ratio <= cfg.max_failure_ratio {
        return None;
    }
    failed.sort_by_key(|t| t.status.timestamp);
    failed.last().map(|t| t.id.clone())
}

/// Whether the supervisor's plan already changes this slot.
fn touched_by(plan: &Plan, s: &Slot) -> bool {
    plan.create
        .iter()
        .any(|t| t.slot == s.slot && (s.node.is_empty() || t.node_id == s.node))
        || plan
            .update
            .iter()
            .any(|u| s.wanted.iter().any(|t| t.id == u.id))
}

/// Gives a slot a task of the current template, as the order says.
fn replace(service: &Service, s: &Slot, order: UpdateOrder, now: Timestamp, plan: &mut Plan) {
    let desired = match order {
        UpdateOrder::StopFirst => TaskState::Ready,
        UpdateOrder::StartFirst => TaskState::Running,
    };
    plan.create
        .push(new_task(service, s.slot, s.node.clone(), desired, now));
    if order == UpdateOrder::StopFirst {
        for t in &s.wanted {
            plan.set_desired(t, TaskState::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests;
