//! The scheduler conformance suite (feature `testing`): what every [`Scheduler`]
//! must do to be correct, written once, for a host to run on its own scheduler.
//!
//! The points checked are those of the trait's "To be correct" section: no panic,
//! only offered tasks and known nodes, each task once, placements that pass every
//! filter in plan order, a reason for every task not placed, and a task left
//! unplaced only when no node can take it. [`verify`] checks them on one plan; each
//! [`Check`] is a cluster and batches built to exercise one part of the contract
//! (a filter, an empty cluster, a scheduler kept across passes), with [`verify`]
//! run on every plan.
//!
//! ```
//! use swarm_sched::SpreadScheduler;
//! use swarm_sched::testing::{Check, run, suite};
//!
//! // Every check; panics with each failure.
//! suite(|| Box::new(SpreadScheduler));
//! // Or one check at a time, e.g. one #[test] each.
//! assert!(run(Check::HostPorts, &|| Box::new(SpreadScheduler)).is_ok());
//! ```
//!
//! Each check makes a new scheduler with the factory, so a scheduler's state
//! does not leak from one check to another; [`Check::FollowsTheView`] reuses one
//! across passes, as the [`Driver`](crate::Driver) does.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use swarm_core::types::Task;

use crate::draft::Draft;
use crate::filter::Requirements;
use crate::scheduler::{Plan, Scheduler};
use crate::view::NodeView;

mod checks;
#[cfg(test)]
mod tests;

/// One check of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// No node at all: every task unplaced with a reason; an empty batch gives an
    /// empty plan.
    EmptyCluster,
    /// Nodes down, disconnected, of unknown state, drained or paused get nothing;
    /// the ready, active ones take every task.
    UnavailableNodes,
    /// Placement constraints and platforms: tasks go only to nodes that match;
    /// tasks no node matches get a reason.
    Constraints,
    /// CPU and memory reservations, counting running tasks and the plan's
    /// earlier placements: no node is overcommitted, every node with room is used.
    Resources,
    /// A host-mode published port is taken once per node, counting a running
    /// task that holds it.
    HostPorts,
    /// `max_replicas` tasks of a service per node at most, counting running ones.
    MaxReplicas,
    /// One batch mixing services with different requirements, interleaved.
    MixedBatch,
    /// One scheduler over three passes whose views change between them (placements
    /// counted, a node drained, one joining, one removed): each plan follows its
    /// pass's view.
    FollowsTheView,
}

impl Check {
    /// Every check.
    pub const ALL: [Check; 8] = [
        Check::EmptyCluster,
        Check::UnavailableNodes,
        Check::Constraints,
        Check::Resources,
        Check::HostPorts,
        Check::MaxReplicas,
        Check::MixedBatch,
        Check::FollowsTheView,
    ];
}

/// A failed check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("scheduler conformance check {check:?} failed: {message}")]
pub struct Failure {
    /// The check.
    pub check: Check,
    /// What the scheduler did wrong.
    pub message: String,
}

/// Runs one check on schedulers made by `make`.
pub fn run(check: Check, make: &dyn Fn() -> Box<dyn Scheduler>) -> Result<(), Failure> {
    checks::run(check, make).map_err(|message| Failure { check, message })
}

/// Runs every check on schedulers made by `make`.
///
/// # Panics
///
/// When a check fails, listing every failure.
pub fn suite(make: impl Fn() -> Box<dyn Scheduler>) {
    let failures: Vec<String> = Check::ALL
        .into_iter()
        .filter_map(|check| run(check, &make).err())
        .map(|f| f.to_string())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Checks `plan`, proposed for `tasks` on `view`, against the trait's "To be
/// correct" points 2 to 5; `Err` says the first one it breaks. The tasks must be
/// as the driver offers them (PENDING, desired to run, no node, distinct IDs).
pub fn verify(view: &NodeView, tasks: &[Arc<Task>], plan: &Plan) -> Result<(), String> {
    let offered = |id: &str| tasks.iter().find(|t| t.id.as_str() == id);
    let mut decided: HashSet<&str> = HashSet::new();
    let mut draft = Draft::new(view);
    for p in &plan.placements {
        let Some(task) = offered(p.task.as_str()) else {
            return Err(format!("places task {}, which was not offered", p.task));
        };
        if !decided.insert(task.id.as_str()) {
            return Err(format!("names task {} twice", p.task));
        }
        let Some(node) = view.node(&p.node) else {
            return Err(format!(
                "places task {} on node {}, which is not in the view",
                p.task, p.node
            ));
        };
        let req = Requirements::of(task);
        if let Err(filter) = draft.check(node, &task.service_id, &req) {
            return Err(format!(
                "places task {} on node {}, which the {filter:?} filter rejects ({})",
                p.task,
                p.node,
                filter.explain(1)
            ));
        }
        draft.place(node, &task.service_id, &req);
    }
    for u in &plan.unplaced {
        let Some(task) = offered(u.task.as_str()) else {
            return Err(format!(
                "gives a reason for task {}, which was not offered",
                u.task
            ));
        };
        if !decided.insert(task.id.as_str()) {
            return Err(format!("names task {} twice", u.task));
        }
        if u.reason.trim().is_empty() {
            return Err(format!(
                "leaves task {} unplaced with an empty reason",
                u.task
            ));
        }
    }
    if let Some(t) = tasks.iter().find(|t| !decided.contains(t.id.as_str())) {
        return Err(format!("neither places task {} nor gives a reason", t.id));
    }
    for u in &plan.unplaced {
        let task = offered(u.task.as_str()).expect("checked above");
        let req = Requirements::of(task);
        let mut room: Vec<_> = view
            .nodes()
            .filter(|n| draft.check(n, &task.service_id, &req).is_ok())
            .map(|n| n.id().as_str())
            .collect();
        room.sort_unstable();
        if let Some(node) = room.first() {
            return Err(format!(
                "leaves task {} unplaced ({}) although node {node} can take it",
                u.task, u.reason
            ));
        }
    }
    Ok(())
}

/// Runs `scheduler` on `view` and `tasks` and [`verify`]s the plan; a panic is
/// a failure too.
fn schedule(
    scheduler: &mut dyn Scheduler,
    view: &NodeView,
    tasks: &[Arc<Task>],
) -> Result<Plan, String> {
    let plan = catch_unwind(AssertUnwindSafe(|| scheduler.schedule(view, tasks)))
        .map_err(|panic| format!("panics: {}", panic_message(&*panic)))?;
    verify(view, tasks, &plan)?;
    Ok(plan)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}
