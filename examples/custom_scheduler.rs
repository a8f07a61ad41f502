//! A custom scheduler: bin packing instead of spreading.
//!
//! `BinPack` implements `swarm_sched::Scheduler`: each task goes to the fullest
//! node that still fits it (least free memory, then least free CPU, then most
//! tasks), so whole nodes stay free for big tasks or can be switched off. It
//! reuses the default scheduler's filters through a `Draft`, which also lets it
//! see its own earlier placements in the batch. It looks at every node for
//! every task: simple, fine for hundreds of nodes.
//!
//! Run it: `cargo run --example custom_scheduler`. It places the same six tasks
//! with the default spread scheduler and with `BinPack`, and prints both.

use std::cmp::Reverse;
use std::sync::Arc;

use swarm_core::Store;
use swarm_core::types::*;
use swarm_sched::{
    Draft, Driver, NodeInfo, NodeView, Plan, Requirements, Scheduler, SpreadScheduler,
};

/// Fills the fullest node that fits first.
#[derive(Clone, Copy, Debug, Default)]
pub struct BinPack;

impl Scheduler for BinPack {
    fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
        let mut plan = Plan::default();
        let mut draft = Draft::new(view);
        for task in tasks {
            let req = Requirements::of(task);
            let fullest = view
                .nodes()
                .filter(|n| draft.check(n, &task.service_id, &req).is_ok())
                .max_by_key(|n| fullness(&draft, n));
            match fullest {
                Some(node) => {
                    draft.place(node, &task.service_id, &req);
                    plan.place(&task.id, node.id());
                }
                // The same explanation the default scheduler gives.
                None => plan.fail(&task.id, draft.explain(&task.service_id, &req).message()),
            }
        }
        plan
    }
}

/// Larger is fuller; the node ID makes the choice deterministic.
fn fullness<'a>(
    draft: &Draft<'_>,
    n: &'a NodeInfo,
) -> (Reverse<i64>, Reverse<i64>, u32, Reverse<&'a str>) {
    (
        Reverse(draft.free_memory_bytes(n)),
        Reverse(draft.free_nano_cpus(n)),
        draft.active_tasks(n),
        Reverse(n.id().as_str()),
    )
}

/// A READY, active node with 4 CPUs and 8 GiB.
pub fn worker(id: &str) -> Node {
    Node {
        id: id.into(),
        description: Some(NodeDescription {
            hostname: id.into(),
            platform: Platform {
                architecture: "x86_64".into(),
                os: "linux".into(),
            },
            resources: Resources {
                nano_cpus: 4_000_000_000,
                memory_bytes: 8 << 30,
                generic: vec![],
            },
            ..Default::default()
        }),
        status: NodeStatus {
            state: NodeState::Ready,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A PENDING task of service `web` reserving 1 CPU and 2 GiB.
pub fn web_task(slot: u64) -> Task {
    Task {
        id: format!("web.{slot}").into(),
        service_id: "web".into(),
        slot,
        spec: TaskSpec {
            resources: Some(ResourceRequirements {
                limits: None,
                reservations: Some(Resources {
                    nano_cpus: 1_000_000_000,
                    memory_bytes: 2 << 30,
                    generic: vec![],
                }),
            }),
            ..Default::default()
        },
        status: TaskStatus {
            state: TaskState::Pending,
            ..Default::default()
        },
        desired_state: TaskState::Running,
        ..Default::default()
    }
}

/// Runs one scheduling pass over three nodes and six tasks with `scheduler`;
/// returns how many tasks each node got.
pub fn place_six(
    scheduler: Box<dyn Scheduler>,
) -> Result<Vec<(String, usize)>, swarm_sched::Error> {
    let store = Store::new();
    store.update_local(|tx| {
        for id in ["node-1", "node-2", "node-3"] {
            tx.create(worker(id))?;
        }
        for slot in 1..=6 {
            tx.create(web_task(slot))?;
        }
        Ok(())
    })?;
    let mut driver = Driver::new(store.clone(), scheduler);
    futures::executor::block_on(driver.tick())?;
    let view = store.view();
    Ok(["node-1", "node-2", "node-3"]
        .iter()
        .map(|n| (n.to_string(), view.tasks_by_node(n).count()))
        .collect())
}

fn main() -> Result<(), swarm_sched::Error> {
    println!("spread:   {:?}", place_six(Box::new(SpreadScheduler))?);
    println!("bin-pack: {:?}", place_six(Box::new(BinPack))?);
    Ok(())
}
