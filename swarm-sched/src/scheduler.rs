//! The `Scheduler` trait and the plan it returns.

use std::sync::Arc;

use swarm_core::Id;
use swarm_core::types::Task;

use crate::view::NodeView;

/// Decides which node runs each pending task. The extension point a host
/// implements to replace the default [`SpreadScheduler`](crate::SpreadScheduler).
///
/// A scheduler only *proposes*: it returns a [`Plan`], and the
/// [`Driver`](crate::Driver) validates every placement against the same filters
/// the default scheduler uses (readiness, resources, plugins, constraints,
/// platform, host ports, max replicas) before writing it to the store. A
/// placement that fails validation is dropped with a warning and its task stays
/// PENDING, to be offered again when the nodes change.
///
/// # Contract
/// - `view` is the state of the nodes when the pass starts; it does not change
///   during the call. Placements earlier in the same plan are not in it: use a
///   [`Draft`](crate::Draft) to see them (resources running out mid-batch). A
///   scheduler kept across passes gets each pass's view: what it remembers of
///   an earlier one may be stale.
/// - Every task of `tasks` is PENDING, desired to run, and has no node. The
///   driver ignores later mentions of a task in the plan; a task left out of
///   both `placements` and `unplaced` stays PENDING without a message and is
///   offered again only when the nodes change.
/// - `unplaced` reasons become the task's `status.err`, shown by `docker service
///   ps`: use SwarmKit's form, e.g. `no suitable node (insufficient resources on
///   2 nodes)` ([`Explanation`](crate::Explanation) builds it).
/// - There is no error result: a task the scheduler cannot place gets a reason.
///   It must not panic; the driver does not catch panics.
/// - It should be deterministic (same view and tasks, same plan) so that tests
///   and replays are reproducible, and fast: it runs on the leader's hot path.
///
/// # To be correct
///
/// The driver survives any plan, but only a correct scheduler gets every task
/// that can run onto a node, with a reason for the others. To be correct an
/// implementor must, for every `view` and `tasks` as above:
///
/// 1. not panic: not on a view without nodes, an empty batch, or tasks no node
///    can take;
/// 2. name only tasks of `tasks` and nodes of `view`, and each task at most once
///    (in `placements` or in `unplaced`);
/// 3. propose only placements that pass every filter, taken in plan order with
///    the plan's earlier placements counted (what [`Draft::check`](crate::Draft::check)
///    then [`Draft::place`](crate::Draft::place) compute): never on a node that
///    is down, drained or paused, lacks the resources, plugins or platform, fails
///    a constraint, has a host-mode port taken, or holds `max_replicas` tasks of
///    the service already;
/// 4. account for every task of `tasks`: place it, or give it a non-empty reason;
/// 5. leave a task unplaced only when no node passes the filters for it with
///    every placement of the plan counted (a task left unplaced while a node has
///    room waits until the nodes change).
///
/// The conformance suite (`swarm_sched::testing`, feature `testing`) checks
/// these five points on a scheduler of yours, on clusters built to exercise
/// each filter; determinism and speed are left to you.
pub trait Scheduler: Send {
    /// Proposes nodes for `tasks`.
    fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan;
}

impl<S: Scheduler + ?Sized> Scheduler for Box<S> {
    fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
        (**self).schedule(view, tasks)
    }
}

/// A task placed on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The task.
    pub task: Id,
    /// The node chosen for it.
    pub node: Id,
}

/// A task no node could take, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    /// The task.
    pub task: Id,
    /// Why, in SwarmKit's words (becomes the task's `status.err`).
    pub reason: String,
}

/// What a scheduling pass proposes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Tasks with the node chosen for each.
    pub placements: Vec<Placement>,
    /// Tasks that fit nowhere, with the reason.
    pub unplaced: Vec<Unplaced>,
}

impl Plan {
    /// Records that `task` goes to `node`.
    pub fn place(&mut self, task: &Id, node: &Id) {
        self.placements.push(Placement {
            task: task.clone(),
            node: node.clone(),
        });
    }

    /// Records that `task` fits nowhere, because of `reason`.
    pub fn fail(&mut self, task: &Id, reason: impl Into<String>) {
        self.unplaced.push(Unplaced {
            task: task.clone(),
            reason: reason.into(),
        });
    }

    /// The node the plan chose for `task`, if any.
    pub fn node_of(&self, task: &str) -> Option<&Id> {
        self.placements
            .iter()
            .find(|p| p.task.as_str() == task)
            .map(|p| &p.node)
    }

    /// The reason the plan gives for not placing `task`, if any.
    pub fn reason_for(&self, task: &str) -> Option<&str> {
        self.unplaced
            .iter()
            .find(|u| u.task.as_str() == task)
            .map(|u| u.reason.as_str())
    }
}
