//! The replicated orchestrator: one live task per slot, `replicas` slots.

use std::collections::BTreeSet;

use swarm_core::types::{Service, TaskState};
use swarm_core::{Id, Tables, Timestamp};

use super::{Plan, SlotState, Work, free_slots, group_tasks, is_wanted, new_task, supervise_group};

/// Plans for a replicated service: supervises every slot (restart policy,
/// stranded tasks), then scales: missing slots are filled lowest number first,
/// extra slots are removed highest number first (desired REMOVE).
pub fn reconcile_replicated(
    view: &Tables,
    service: &Service,
    replicas: u64,
    now: Timestamp,
) -> Plan {
    let slots = group_tasks(view, service, |t| t.slot);
    let mut plan = Plan::default();
    let mut occupied = BTreeSet::new();
    let mut live = Vec::new();
    for (&slot, tasks) in &slots {
        if slot == 0 {
            continue;
        }
        let replace = |desired| new_task(service, slot, Id::empty(), desired, now);
        match supervise_group(
            view,
            service,
            Work::Service,
            tasks,
            Some(replace),
            now,
            &mut plan,
        ) {
            SlotState::Live => {
                occupied.insert(slot);
                live.push(slot);
            }
            SlotState::Finished => {
                occupied.insert(slot);
            }
            SlotState::Empty => {}
        }
    }
    let target = replicas as usize;
    if occupied.len() > target {
        // Scale down: the highest live slots go first.
        let mut extra = occupied.len() - target;
        for &slot in live.iter().rev() {
            if extra == 0 {
                break;
            }
            for t in slots[&slot].iter().filter(|t| is_wanted(t)) {
                plan.set_desired(t, TaskState::Remove);
            }
            // Replacements planned for this slot are dropped too.
            plan.create.retain(|t| t.slot != slot);
            extra -= 1;
        }
    } else {
        for slot in free_slots(&occupied).take(target - occupied.len()) {
            let task = new_task(service, slot, Id::empty(), TaskState::Running, now);
            plan.create.push(task);
        }
    }
    plan
}
