//! The leader's orchestration loops, as pure planning functions: given the store's
//! state and the time, what to create, change and delete. The leader runs them on
//! store events and commits each plan in one transaction; tests drive them with a
//! hand-built state and a manual clock.
//!
//! ```text
//!  service / node / task events ─► reconcile(view, service, now) ─► Plan ─► one tx
//!        replicated: one task per slot 1..=N; scale up fills the lowest free slots,
//!                    scale down removes the highest slots first
//!        global:     one task per eligible node
//!        restart:    ended tasks shut down and replaced as the restart policy says
//!        reaper:     `task_history_retention_limit` tasks kept per slot / node
//!        update:     slots whose tasks run an old template replaced per UpdateConfig
//!        jobs:       run-to-completion tasks, never restarted once COMPLETE
//! ```
//!
//! It may use swarm-core (the store's tables and types) and swarm-sched (placement
//! constraints) only: no other room of the facade, no IO, no clock of its own.

mod global;
mod jobs;
mod reaper;
mod replicated;
mod restart;
mod update;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use global::reconcile_global;
pub use jobs::{JobProgress, job_progress, reconcile_job};
pub use reaper::reap;
pub use replicated::reconcile_replicated;
pub use restart::{RestartDecision, restart_decision};
pub use update::{RunHistory, plan_update};

use swarm_core::types::{
    Annotations, Node, NodeState, RestartPolicy, Service, ServiceMode, Task, TaskState, TaskStatus,
};
use swarm_core::{Id, Tables, Timestamp, Tx};

/// What one reconciliation wants done, applied in one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// New tasks.
    pub create: Vec<Task>,
    /// Tasks with a changed desired state (each carries the version it was read at).
    pub update: Vec<Task>,
    /// Tasks to delete (history beyond the retention limit, removed slots).
    pub delete: Vec<Id>,
    /// Services with a changed update status or spec (a rollback), each carrying
    /// the version it was read at.
    pub services: Vec<Service>,
    /// When the plan should be made again (a delayed restart comes due).
    pub wake_at: Option<Timestamp>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.update.is_empty()
            && self.delete.is_empty()
            && self.services.is_empty()
    }

    /// Writes the plan in `tx`.
    pub fn apply(self, tx: &mut Tx) -> swarm_core::Result<()> {
        for s in self.services {
            tx.update(s)?;
        }
        for t in self.update {
            tx.update(t)?;
        }
        for t in self.create {
            tx.create(t)?;
        }
        for id in self.delete {
            if tx.contains::<Task>(&id) {
                tx.delete::<Task>(&id)?;
            }
        }
        Ok(())
    }

    fn wake(&mut self, at: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Sets a task's desired state (never backwards), recording the update once.
    fn set_desired(&mut self, task: &Task, state: TaskState) {
        if task.desired_state >= state {
            return;
        }
        if let Some(t) = self.update.iter_mut().find(|t| t.id == task.id) {
            t.desired_state = t.desired_state.max(state);
            return;
        }
        let mut t = task.clone();
        t.desired_state = state;
        self.update.push(t);
    }
}

/// Reconciles one service, whatever its mode.
pub fn reconcile(view: &Tables, service: &Service, now: Timestamp) -> Plan {
    let retention = view
        .cluster()
        .map_or(5, |c| c.spec.orchestration.task_history_retention_limit);
    let mut plan = match service.spec.mode {
        ServiceMode::Replicated { replicas } => reconcile_replicated(view, service, replicas, now),
        ServiceMode::Global => reconcile_global(view, service, now),
        ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob => {
            reconcile_job(view, service, now)
        }
    };
    reap(view, service, retention, &mut plan);
    plan
}

/// Plans the removal of a service: every task shut down for good (desired
/// REMOVE); the reaper deletes them once they have stopped.
pub fn remove_service_tasks(view: &Tables, service_id: &Id) -> Plan {
    let mut plan = Plan::default();
    for t in view.tasks_by_service(service_id) {
        if t.desired_state < TaskState::Remove {
            plan.set_desired(&t, TaskState::Remove);
        } else if !is_alive(&t) {
            plan.delete.push(t.id.clone());
        }
    }
    plan
}

/// A new task for `service` in `slot` (0 for global) on `node` (empty: the
/// scheduler picks), desired `desired`.
pub fn new_task(
    service: &Service,
    slot: u64,
    node_id: Id,
    desired: TaskState,
    now: Timestamp,
) -> Task {
    let name = if slot != 0 {
        format!("{}.{}", service.spec.annotations.name, slot)
    } else {
        format!("{}.{}", service.spec.annotations.name, node_id)
    };
    Task {
        id: Id::generate(),
        spec: service.spec.task.clone(),
        spec_version: service.spec_version,
        service_id: service.id.clone(),
        slot,
        node_id,
        annotations: Annotations::named(name),
        service_annotations: service.spec.annotations.clone(),
        status: TaskStatus {
            timestamp: now,
            state: TaskState::New,
            message: "created".into(),
            ..Default::default()
        },
        desired_state: desired,
        endpoint: service.endpoint.clone(),
        ..Default::default()
    }
}

/// Whether a task is still wanted: desired to run (or to be ready).
pub fn is_wanted(t: &Task) -> bool {
    t.desired_state <= TaskState::Running
}

/// Whether a task may still be running somewhere: it has not reached a terminal
/// state. (A task never assigned to a node runs nowhere.)
pub fn is_alive(t: &Task) -> bool {
    let never_placed = t.node_id.is_empty() && t.status.state < TaskState::Assigned;
    !t.status.state.is_terminal() && !never_placed
}

/// Whether the node a task is on can keep running it: it exists, is not down
/// and is not drained.
fn node_keeps(view: &Tables, node_id: &Id) -> bool {
    if node_id.is_empty() {
        return true;
    }
    match view.get::<Node>(node_id) {
        None => false,
        Some(n) => {
            n.status.state != NodeState::Down
                && n.spec.availability != swarm_core::types::Availability::Drain
        }
    }
}

/// Tasks of a service grouped by key (slot, or node for global services), each
/// group newest first.
fn group_tasks<K: Ord>(
    view: &Tables,
    service: &Service,
    key: impl Fn(&Task) -> K,
) -> BTreeMap<K, Vec<Arc<Task>>> {
    let mut groups: BTreeMap<K, Vec<Arc<Task>>> = BTreeMap::new();
    for t in view.tasks_by_service(&service.id) {
        groups.entry(key(&t)).or_default().push(t);
    }
    for g in groups.values_mut() {
        g.sort_by(|a, b| newest_first(a, b));
    }
    groups
}

/// Slot numbers from 1 up that `taken` does not hold, lowest first: where new
/// slots go.
fn free_slots(taken: &BTreeSet<u64>) -> impl Iterator<Item = u64> + '_ {
    (1..).filter(|slot| !taken.contains(slot))
}

/// What work a slot's tasks do, where supervising them differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    /// A service's: runs until stopped; an update replaces it in place, stop-first
    /// or start-first.
    Service,
    /// A job's: runs to completion; an update starts a new iteration rather than
    /// replacing tasks in place.
    Job,
}

/// Walks the tasks of one slot (or one node of a global service or job), newest
/// first: shuts down wanted tasks that ended or whose node cannot keep them,
/// replaces them as the restart policy says (with `replace`; none: the slot may
/// get no new task), and promotes delayed restarts that came due. Returns what
/// the slot holds afterwards.
fn supervise_group(
    view: &Tables,
    service: &Service,
    work: Work,
    tasks: &[Arc<Task>],
    replace: Option<impl Fn(TaskState) -> Task>,
    now: Timestamp,
    plan: &mut Plan,
) -> SlotState {
    let policy = service.spec.task.restart.clone().unwrap_or_default();
    let mut live = false;
    // Whether the newest live task runs: a service's older task beside it stays
    // until then (a start-first update).
    let mut newest_runs = false;
    let mut finished_now = false;
    for t in tasks.iter().filter(|t| is_wanted(t)) {
        let stranded = !node_keeps(view, &t.node_id);
        if !t.status.state.is_terminal() && !stranded {
            if live {
                // An older task still wanted beside a newer one: only the newest
                // stays, a service's once it runs, a job's at once.
                if newest_runs || work == Work::Job {
                    plan.set_desired(t, TaskState::Shutdown);
                }
                continue;
            }
            live = true;
            newest_runs = t.status.state == TaskState::Running;
            if t.desired_state == TaskState::Ready {
                match start_at(view, work, t, tasks, &policy) {
                    Some(due) if now >= due => plan.set_desired(t, TaskState::Running),
                    Some(due) => plan.wake(due),
                    None => {}
                }
            }
            continue;
        }
        plan.set_desired(t, TaskState::Shutdown);
        let Some(replace) = &replace else {
            continue;
        };
        if live {
            continue;
        }
        let decision = if stranded && !t.status.state.is_terminal() {
            // The node went away or was drained: the task did not end, it moves.
            RestartDecision::Now
        } else {
            restart_decision(t, tasks, &policy, now)
        };
        match decision {
            RestartDecision::Now => plan.create.push(replace(TaskState::Running)),
            RestartDecision::After(due) => {
                plan.create.push(replace(TaskState::Ready));
                plan.wake(due);
            }
            RestartDecision::Never(_) => {
                finished_now = true;
                // A service's older tasks are still looked at; a job's slot is
                // done.
                if work == Work::Job {
                    break;
                }
                continue;
            }
        }
        live = true;
    }
    if live {
        SlotState::Live
    } else if finished_now || (work == Work::Service && finished(tasks)) {
        SlotState::Finished
    } else {
        SlotState::Empty
    }
}

/// When a delayed replacement `t` (desired READY) may start, or `None` while a
/// task it replaces still runs (a service's stop-first update: it starts once
/// that task has stopped). A service's replacement for a task stopped on purpose
/// (an update) starts at once; a restart after the task ended, and any job's,
/// waits the restart policy's delay.
fn start_at(
    view: &Tables,
    work: Work,
    t: &Task,
    tasks: &[Arc<Task>],
    policy: &RestartPolicy,
) -> Option<Timestamp> {
    let delayed = t.meta.created_at.add(policy.delay);
    if work == Work::Job {
        return Some(delayed);
    }
    // The tasks it replaces: the slot's others no longer wanted.
    let mut replaced = tasks.iter().filter(|o| o.id != t.id && !is_wanted(o));
    if replaced
        .clone()
        .any(|o| is_alive(o) && node_keeps(view, &o.node_id))
    {
        return None;
    }
    let stopped_on_purpose = replaced.next().is_some_and(|o| !ended_by_itself(o));
    Some(if stopped_on_purpose {
        t.meta.created_at
    } else {
        delayed
    })
}

/// What a slot (or a global service's or job's node) holds after supervision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// A task that runs or will run.
    Live,
    /// Nothing, on purpose: its task ended and the restart policy said no (or,
    /// for a job, a task completed).
    Finished,
    /// Nothing: a task should be made.
    Empty,
}

/// Whether a slot was left empty on purpose: its newest task ended by itself and
/// was not replaced (the restart policy said no).
fn finished(tasks: &[Arc<Task>]) -> bool {
    tasks
        .first()
        .is_some_and(|t| t.desired_state == TaskState::Shutdown && ended_by_itself(t))
}

/// Whether a task ended by itself (completed, failed or was rejected) rather
/// than being stopped.
fn ended_by_itself(t: &Task) -> bool {
    matches!(
        t.status.state,
        TaskState::Complete | TaskState::Failed | TaskState::Rejected
    )
}

fn newest_first(a: &Task, b: &Task) -> std::cmp::Ordering {
    (b.meta.created_at, b.meta.version.index, &b.id).cmp(&(
        a.meta.created_at,
        a.meta.version.index,
        &a.id,
    ))
}

#[cfg(test)]
mod tests;
