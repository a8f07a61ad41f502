//! The global orchestrator: one task on every eligible node.

use swarm_core::types::{Availability, Node, NodeState, Service, TaskState};
use swarm_core::{Tables, Timestamp};

use super::{Plan, SlotState, Work, group_tasks, is_wanted, new_task, supervise_group};

/// Whether a node should run a task of a global service or job: ready, active
/// and matching the placement constraints. A paused node keeps the tasks it has
/// but gets no new ones.
pub(super) fn eligible(node: &Node, constraints: &[swarm_sched::Constraint]) -> bool {
    node.status.state == NodeState::Ready
        && node.spec.availability == Availability::Active
        && swarm_sched::node_matches(constraints, node)
}

/// The service's placement constraints, parsed (none: every node qualifies).
pub(super) fn constraints(service: &Service) -> swarm_sched::Result<Vec<swarm_sched::Constraint>> {
    let exprs = service
        .spec
        .task
        .placement
        .as_ref()
        .map(|p| p.constraints.clone())
        .unwrap_or_default();
    swarm_sched::parse_constraints(&exprs)
}

/// Plans for a global service: a task on each eligible node, none elsewhere.
pub fn reconcile_global(view: &Tables, service: &Service, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    // Constraints were validated when the service was created; an invalid one
    // places nothing rather than everything.
    let Ok(constraints) = constraints(service) else {
        return plan;
    };
    let by_node = group_tasks(view, service, |t| t.node_id.clone());
    for node in view.list::<Node>() {
        let tasks = by_node.get(&node.id).map(Vec::as_slice).unwrap_or(&[]);
        let fits = swarm_sched::node_matches(&constraints, &node);
        let replace = eligible(&node, &constraints)
            .then_some(|desired| new_task(service, 0, node.id.clone(), desired, now));
        let state = supervise_group(
            view,
            service,
            Work::Service,
            tasks,
            replace.as_ref(),
            now,
            &mut plan,
        );
        if state == SlotState::Live && !fits {
            // Constraints changed: the node no longer qualifies.
            for t in tasks.iter().filter(|t| is_wanted(t)) {
                plan.set_desired(t, TaskState::Shutdown);
            }
            plan.create.retain(|t| t.node_id != node.id);
        } else if state == SlotState::Empty
            && let Some(replace) = &replace
        {
            plan.create.push(replace(TaskState::Running));
        }
    }
    // Tasks on nodes that are gone.
    for (node_id, tasks) in &by_node {
        if !node_id.is_empty() && !view.contains::<Node>(node_id) {
            for t in tasks.iter().filter(|t| is_wanted(t)) {
                plan.set_desired(t, TaskState::Shutdown);
            }
        }
    }
    plan
}
