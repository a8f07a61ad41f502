//! The bin-packing scheduler of `examples/custom_scheduler.rs` places tasks
//! differently from the default spread scheduler.

#[allow(dead_code)]
#[path = "../examples/custom_scheduler.rs"]
mod example;

use std::sync::Arc;

use example::{BinPack, place_six, web_task, worker};
use swarm_core::types::{Node, NodeState, Task};
use swarm_sched::{NodeView, Scheduler, SpreadScheduler};

fn count(v: &[(String, usize)]) -> Vec<usize> {
    v.iter().map(|(_, c)| *c).collect()
}

#[test]
fn bin_packing_fills_nodes_spread_does_not() {
    // 1 CPU and 2 GiB per task on 4-CPU 8-GiB nodes: four fit on one node.
    assert_eq!(
        count(&place_six(Box::new(SpreadScheduler)).unwrap()),
        [2, 2, 2]
    );
    assert_eq!(count(&place_six(Box::new(BinPack)).unwrap()), [4, 2, 0]);
}

#[test]
fn bin_packing_prefers_the_fullest_node_and_explains_failures() {
    let mut view = NodeView::new();
    for id in ["a", "b"] {
        view.upsert_node(Arc::new(worker(id)));
    }
    let mut down: Node = worker("c");
    down.status.state = NodeState::Down;
    view.upsert_node(Arc::new(down));
    // b already holds a task: it is the fullest, so it fills first.
    let mut running = web_task(100);
    running.node_id = "b".into();
    running.status.state = swarm_core::types::TaskState::Running;
    view.account_task(&running);

    let tasks: Vec<Arc<Task>> = (1..=8).map(|i| Arc::new(web_task(i))).collect();
    let plan = BinPack.schedule(&view, &tasks);
    let on = |n: &str| {
        plan.placements
            .iter()
            .filter(|p| p.node.as_str() == n)
            .count()
    };
    assert_eq!((on("b"), on("a")), (3, 4));
    assert_eq!(plan.placements[0].node.as_str(), "b");
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (insufficient resources on 2 nodes; 1 node not available for new tasks)"
    );
    let spread = SpreadScheduler.schedule(&view, &tasks);
    assert_ne!(spread.placements, plan.placements);
}

#[test]
fn bin_packing_passes_the_scheduler_conformance_suite() {
    swarm_sched::testing::suite(|| Box::new(BinPack));
}
