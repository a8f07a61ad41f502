//! Job services: tasks that run to completion.
//!
//! - replicated job: `total_completions` successful runs wanted, at most
//!   `max_concurrent` at a time; each run has its own slot 1..=total;
//! - global job: one successful run on every eligible node.
//!
//! A COMPLETE task is never restarted; a task that fails is replaced as the
//! restart policy says (a job's "any" restarts on failure only, as a completion
//! is never restarted). Each update of the job starts a new iteration
//! (`JobStatus::job_iteration`): tasks of older iterations are shut down and the
//! job runs again.

use std::collections::BTreeSet;
use std::sync::Arc;

use swarm_core::types::{Node, Service, ServiceMode, Task, TaskState};
use swarm_core::{Id, Tables, Timestamp};

use super::global::{constraints, eligible};
use super::{Plan, SlotState, Work, free_slots, group_tasks, is_wanted, new_task, supervise_group};

/// How far a job has got in its current iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobProgress {
    /// Tasks that completed successfully.
    pub completed: u64,
    /// Tasks running (or on their way to).
    pub running: u64,
    /// Completions wanted (for a global job: eligible nodes).
    pub desired: u64,
}

/// The current iteration of a job service.
fn iteration(service: &Service) -> u64 {
    service
        .job_status
        .as_ref()
        .map_or(0, |j| j.job_iteration.index)
}

fn job_task(service: &Service, slot: u64, node: Id, desired: TaskState, now: Timestamp) -> Task {
    let mut t = new_task(service, slot, node, desired, now);
    t.job_iteration = Some(swarm_core::types::Version {
        index: iteration(service),
    });
    t
}

fn of_iteration(t: &Task, iteration: u64) -> bool {
    t.job_iteration.map_or(0, |v| v.index) == iteration
}

/// Supervises one slot's tasks of the current iteration, newest first: a
/// completion ends the slot; a failed or stranded task is shut down and
/// replaced as the restart policy says (see [`supervise_group`]).
fn supervise(
    view: &Tables,
    service: &Service,
    tasks: &[Arc<Task>],
    replace: Option<impl Fn(TaskState) -> Task>,
    now: Timestamp,
    plan: &mut Plan,
) -> SlotState {
    if tasks.iter().any(|t| t.status.state == TaskState::Complete) {
        for t in tasks
            .iter()
            .filter(|t| is_wanted(t) && !t.status.state.is_terminal())
        {
            plan.set_desired(t, TaskState::Shutdown);
        }
        return SlotState::Finished;
    }
    supervise_group(view, service, Work::Job, tasks, replace, now, plan)
}

/// Shuts down the tasks of older iterations (those that ended become history
/// the reaper may prune).
fn retire_old_iterations(view: &Tables, service: &Service, plan: &mut Plan) {
    let it = iteration(service);
    for t in view.tasks_by_service(&service.id) {
        if !of_iteration(&t, it) && is_wanted(&t) {
            plan.set_desired(&t, TaskState::Shutdown);
        }
    }
}

/// Plans a job service (replicated or global job).
pub fn reconcile_job(view: &Tables, service: &Service, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    retire_old_iterations(view, service, &mut plan);
    let it = iteration(service);
    match service.spec.mode {
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => {
            let (concurrent, total) = limits(max_concurrent, total_completions);
            let slots = group_tasks(view, service, |t| t.slot);
            let mut done = 0u64;
            let mut live = 0u64;
            let mut taken = BTreeSet::new();
            for (&slot, tasks) in &slots {
                let tasks: Vec<Arc<Task>> = tasks
                    .iter()
                    .filter(|t| of_iteration(t, it))
                    .cloned()
                    .collect();
                if slot == 0 || tasks.is_empty() {
                    continue;
                }
                let replace = |d| job_task(service, slot, Id::empty(), d, now);
                match supervise(view, service, &tasks, Some(replace), now, &mut plan) {
                    SlotState::Finished => {
                        done += 1;
                        taken.insert(slot);
                    }
                    SlotState::Live => {
                        live += 1;
                        taken.insert(slot);
                    }
                    SlotState::Empty => {}
                }
            }
            let want_live = concurrent.min(total.saturating_sub(done));
            for slot in free_slots(&taken).take(want_live.saturating_sub(live) as usize) {
                let task = job_task(service, slot, Id::empty(), TaskState::Running, now);
                plan.create.push(task);
            }
        }
        ServiceMode::GlobalJob => {
            let Ok(constraints) = constraints(service) else {
                return plan;
            };
            let by_node = group_tasks(view, service, |t| t.node_id.clone());
            for node in view.list::<Node>() {
                let tasks: Vec<Arc<Task>> = by_node
                    .get(&node.id)
                    .map(|v| v.iter().filter(|t| of_iteration(t, it)).cloned().collect())
                    .unwrap_or_default();
                let replace = eligible(&node, &constraints)
                    .then_some(|d| job_task(service, 0, node.id.clone(), d, now));
                let state = supervise(view, service, &tasks, replace.as_ref(), now, &mut plan);
                if state == SlotState::Empty
                    && let Some(replace) = &replace
                {
                    plan.create.push(replace(TaskState::Running));
                }
            }
        }
        ServiceMode::Replicated { .. } | ServiceMode::Global => {}
    }
    plan
}

/// `(max_concurrent, total_completions)` as used: a zero total means
/// `max_concurrent` completions, a zero concurrency means one at a time.
fn limits(max_concurrent: u64, total_completions: u64) -> (u64, u64) {
    let concurrent = max_concurrent.max(1);
    let total = if total_completions == 0 {
        concurrent
    } else {
        total_completions
    };
    (concurrent, total)
}

/// The progress of a job service's current iteration (zero for other modes).
pub fn job_progress(view: &Tables, service: &Service) -> JobProgress {
    let it = iteration(service);
    let mut p = JobProgress::default();
    for t in view.tasks_by_service(&service.id) {
        if !of_iteration(&t, it) {
            continue;
        }
        if t.status.state == TaskState::Complete {
            p.completed += 1;
        } else if is_wanted(&t) && !t.status.state.is_terminal() {
            p.running += 1;
        }
    }
    p.desired = match service.spec.mode {
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => limits(max_concurrent, total_completions).1,
        ServiceMode::GlobalJob => {
            let constraints = constraints(service).unwrap_or_default();
            view.list::<Node>()
                .filter(|n| eligible(n, &constraints))
                .count() as u64
        }
        _ => 0,
    };
    p
}

#[cfg(test)]
mod tests;
