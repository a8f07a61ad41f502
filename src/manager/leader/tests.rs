use std::sync::Arc;
use std::time::Duration;

use swarm_core::testing::Patience;
use swarm_core::types::*;
use swarm_core::{Id, Store, SystemClock};

use super::*;

fn factory() -> SchedulerFactory {
    Arc::new(|| Box::new(swarm_sched::SpreadScheduler) as Box<dyn Scheduler>)
}

async fn eventually(store: &Store, what: &str, f: impl Fn(&swarm_core::View) -> bool) {
    Patience::within(Duration::from_secs(30))
        .every(Duration::from_millis(10))
        .until_view(store, what, f)
        .await;
}

fn node(id: &str) -> Node {
    Node {
        id: Id::from(id),
        description: Some(NodeDescription {
            hostname: id.into(),
            ..Default::default()
        }),
        status: NodeStatus {
            state: NodeState::Ready,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn a_service_is_orchestrated_allocated_and_scheduled_across_nodes() {
    let store = Store::new();
    store
        .update(|tx| {
            for n in ["n1", "n2", "n3"] {
                tx.create(node(n))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let loops = LeaderLoops::start(
        store.clone(),
        &LeaderConfig::new(factory(), Arc::new(SystemClock)),
        None,
    );
    let control = crate::manager::control::Control::new(store.clone());
    let spec = ServiceSpec {
        annotations: Annotations::named("web"),
        task: TaskSpec {
            container: ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas: 6 },
        ..Default::default()
    };
    let svc = control.create_service(spec).await.unwrap();
    let sid = svc.id.clone();
    eventually(&store, "6 assigned tasks", move |v| {
        v.tasks_by_service(&sid)
            .filter(|t| t.status.state == TaskState::Assigned)
            .count()
            == 6
    })
    .await;
    let view = store.view();
    for n in ["n1", "n2", "n3"] {
        assert_eq!(view.tasks_by_node(n).count(), 2, "spread evenly");
    }
    drop(view);
    // Scale down: the highest slots go.
    control.scale_service("web", 2).await.unwrap();
    let sid = svc.id.clone();
    eventually(&store, "2 wanted tasks", move |v| {
        v.tasks_by_service(&sid)
            .filter(|t| t.desired_state == TaskState::Running)
            .count()
            == 2
    })
    .await;
    let mut slots: Vec<u64> = store
        .view()
        .tasks_by_service(&svc.id)
        .filter(|t| t.desired_state == TaskState::Running)
        .map(|t| t.slot)
        .collect();
    slots.sort();
    assert_eq!(slots, [1, 2]);
    loops.stop().await;
}

#[tokio::test]
async fn tasks_of_a_drained_node_move_to_another_node() {
    let store = Store::new();
    store
        .update(|tx| {
            for n in ["n1", "n2"] {
                tx.create(node(n))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let loops = LeaderLoops::start(
        store.clone(),
        &LeaderConfig::new(factory(), Arc::new(SystemClock)),
        None,
    );
    let control = crate::manager::control::Control::new(store.clone());
    let spec = ServiceSpec {
        annotations: Annotations::named("web"),
        task: TaskSpec {
            container: ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas: 4 },
        ..Default::default()
    };
    control.create_service(spec).await.unwrap();
    eventually(&store, "tasks on both nodes", |v| {
        v.tasks_by_node("n1").count() == 2 && v.tasks_by_node("n2").count() == 2
    })
    .await;
    let n1 = control.inspect_node("n1").unwrap();
    let mut drain = n1.spec.clone();
    drain.availability = Availability::Drain;
    control
        .update_node("n1", n1.meta.version.index, drain)
        .await
        .unwrap();
    eventually(&store, "every wanted task on n2", |v| {
        let wanted: Vec<_> = v
            .list::<Task>()
            .filter(|t| t.desired_state == TaskState::Running)
            .collect();
        wanted.len() == 4 && wanted.iter().all(|t| t.node_id == "n2")
    })
    .await;
    loops.stop().await;
}
