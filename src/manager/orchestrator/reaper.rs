//! The task reaper: keeps a bounded history per slot.

use swarm_core::Tables;
use swarm_core::types::{Service, TaskState};

use super::{Plan, group_tasks, is_alive, is_wanted};

/// Adds to `plan` the deletion of tasks beyond `retention` per slot (per node for
/// global services), oldest first, and of removed tasks (desired REMOVE) that
/// have stopped. Live tasks and tasks the plan is changing are never deleted.
pub fn reap(view: &Tables, service: &Service, retention: i64, plan: &mut Plan) {
    let keep = retention.max(0) as usize;
    let groups = group_tasks(view, service, |t| {
        (
            t.slot,
            if t.slot == 0 {
                t.node_id.clone()
            } else {
                Default::default()
            },
        )
    });
    for tasks in groups.values() {
        for (i, t) in tasks.iter().enumerate() {
            let changing = plan.update.iter().any(|u| u.id == t.id);
            if changing || is_wanted(t) || is_alive(t) {
                continue;
            }
            if i >= keep || t.desired_state >= TaskState::Remove {
                plan.delete.push(t.id.clone());
            }
        }
    }
}
