//! Property tests: spread fairness, and the incremental view staying equal to a
//! view rebuilt from the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::executor::block_on;
use proptest::prelude::*;
use swarm_core::types::*;
use swarm_core::{Store, testing};
use swarm_sched::{Driver, NodeView, Scheduler, SpreadScheduler};

fn running_task(id: String, svc: &Service, node: usize) -> Task {
    let mut t = testing::task(&id, svc, 1);
    t.node_id = format!("n{node:02}").into();
    t.status.state = TaskState::Running;
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// New tasks only go where the service's count ends at most one above the
    /// smallest count: water filling, whatever the starting loads.
    #[test]
    fn spread_is_fair(
        loads in prop::collection::vec((0usize..4, 0usize..5), 1..12),
        new_tasks in 1usize..40,
    ) {
        let (web, other) = (testing::service("web", "web", "i", 1), testing::service("other", "other", "i", 1));
        let mut view = NodeView::new();
        for (i, (mine, theirs)) in loads.iter().enumerate() {
            view.upsert_node(Arc::new(testing::node(&format!("n{i:02}"), "h")));
            for j in 0..*mine {
                view.account_task(&running_task(format!("w{i}.{j}"), &web, i));
            }
            for j in 0..*theirs {
                view.account_task(&running_task(format!("o{i}.{j}"), &other, i));
            }
        }
        let tasks: Vec<Arc<Task>> = (0..new_tasks)
            .map(|i| {
                let mut t = testing::task(&format!("new{i}"), &web, 1);
                t.status.state = TaskState::Pending;
                Arc::new(t)
            })
            .collect();
        let plan = SpreadScheduler.schedule(&view, &tasks);
        prop_assert_eq!(plan.placements.len(), new_tasks);
        let mut final_count: BTreeMap<String, usize> = BTreeMap::new();
        for (i, (mine, _)) in loads.iter().enumerate() {
            final_count.insert(format!("n{i:02}"), *mine);
        }
        for p in &plan.placements {
            *final_count.get_mut(p.node.as_str()).unwrap() += 1;
        }
        let min = *final_count.values().min().unwrap();
        for p in &plan.placements {
            prop_assert!(final_count[p.node.as_str()] <= min + 1, "{:?}", final_count);
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    AddNode(u8),
    RemoveNode(u8),
    Drain(u8, bool),
    AddTasks(u8, u8),
    FailTask(u8),
    RemoveTask(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::AddNode),
        (0u8..6).prop_map(Op::RemoveNode),
        (0u8..6, any::<bool>()).prop_map(|(n, d)| Op::Drain(n, d)),
        (0u8..3, 1u8..6).prop_map(|(s, c)| Op::AddTasks(s, c)),
        any::<u8>().prop_map(Op::FailTask),
        any::<u8>().prop_map(Op::RemoveTask),
    ]
}

fn apply(store: &Store, op: &Op, seq: &mut usize) {
    let view = store.view();
    let tasks = {
        let mut t: Vec<Arc<Task>> = view.list::<Task>().collect();
        t.sort_by(|a, b| a.id.cmp(&b.id));
        t
    };
    let _ = store.update_local(|tx| {
        match op {
            Op::AddNode(n) => {
                let id = format!("n{n}");
                if !tx.contains::<Node>(&id) {
                    let mut node = testing::node(&id, &id);
                    node.description.as_mut().unwrap().resources.nano_cpus = 3_000_000_000;
                    tx.create(node)?;
                }
            }
            Op::RemoveNode(n) => {
                let _ = tx.delete::<Node>(&format!("n{n}"));
            }
            Op::Drain(n, drain) => {
                if let Some(node) = tx.get::<Node>(&format!("n{n}")) {
                    let mut node = (*node).clone();
                    node.spec.availability = if *drain {
                        Availability::Drain
                    } else {
                        Availability::Active
                    };
                    tx.update(node)?;
                }
            }
            Op::AddTasks(s, count) => {
                let svc = testing::service(&format!("s{s}"), &format!("s{s}"), "i", 1);
                for _ in 0..*count {
                    *seq += 1;
                    let mut t = testing::task(&format!("t{seq:04}"), &svc, *seq as u64);
                    t.status.state = TaskState::Pending;
                    t.spec.resources = Some(ResourceRequirements {
                        limits: None,
                        reservations: Some(Resources {
                            nano_cpus: 1_000_000_000,
                            ..Default::default()
                        }),
                    });
                    tx.create(t)?;
                }
            }
            Op::FailTask(i) if !tasks.is_empty() => {
                let mut t = (*tasks[*i as usize % tasks.len()]).clone();
                if t.status.state < TaskState::Failed {
                    t.status.state = TaskState::Failed;
                    tx.update(t)?;
                }
            }
            Op::RemoveTask(i) if !tasks.is_empty() => {
                tx.delete::<Task>(&tasks[*i as usize % tasks.len()].id)?;
            }
            _ => {}
        }
        Ok(())
    });
}

/// Everything the scheduler relies on, per node.
fn summary(view: &NodeView) -> BTreeMap<String, (bool, u32, usize, i64, Vec<u32>)> {
    view.nodes()
        .map(|n| {
            let services = (0..3).map(|s| n.service_tasks(&format!("s{s}"))).collect();
            (
                n.id().to_string(),
                (
                    n.is_schedulable(),
                    n.active_tasks(),
                    n.task_count(),
                    n.free_nano_cpus(),
                    services,
                ),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The driver's view, kept up to date from events, always equals a view
    /// rebuilt from the store; and no node is over-committed.
    #[test]
    fn incremental_view_matches_rebuilt(ops in prop::collection::vec(op(), 1..40)) {
        let store = Store::new();
        let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
        let mut seq = 0;
        for op in &ops {
            apply(&store, op, &mut seq);
            block_on(driver.tick()).unwrap();
            // The driver's own writes are events for the next tick.
            block_on(driver.tick()).unwrap();
            let rebuilt = NodeView::from_tables(&store.view());
            prop_assert_eq!(summary(driver.view()), summary(&rebuilt));
            for n in driver.view().nodes() {
                prop_assert!(n.free_nano_cpus() >= 0, "{} over-committed", n.id());
            }
        }
    }
}
