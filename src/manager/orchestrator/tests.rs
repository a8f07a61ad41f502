use std::time::Duration;

use swarm_core::types::*;
use swarm_core::{Id, Store, Timestamp};

use super::*;

fn t0() -> Timestamp {
    Timestamp {
        seconds: 1_000_000,
        nanos: 0,
    }
}

fn node(id: &str, state: NodeState, availability: Availability, role: NodeRole) -> Node {
    Node {
        id: Id::from(id),
        spec: NodeSpec {
            availability,
            desired_role: role,
            ..Default::default()
        },
        role,
        description: Some(NodeDescription {
            hostname: id.to_string(),
            ..Default::default()
        }),
        status: NodeStatus {
            state,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn service(mode: ServiceMode, restart: Option<RestartPolicy>) -> Service {
    Service {
        id: Id::from("svc"),
        spec: ServiceSpec {
            annotations: Annotations::named("web"),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "busybox".into(),
                    ..Default::default()
                },
                restart,
                ..Default::default()
            },
            mode,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn no_delay() -> Option<RestartPolicy> {
    Some(RestartPolicy {
        delay: Duration::ZERO,
        ..Default::default()
    })
}

/// A store with three ready workers and the service.
fn cluster(svc: &Service) -> Store {
    let clock = std::sync::Arc::new(swarm_core::ManualClock::new(t0()));
    let store = Store::with_clock(clock);
    store
        .update_local(|tx| {
            for n in ["n1", "n2", "n3"] {
                tx.create(node(
                    n,
                    NodeState::Ready,
                    Availability::Active,
                    NodeRole::Worker,
                ))?;
            }
            tx.create(svc.clone()).map(drop)
        })
        .unwrap();
    store
}

/// Reconciles and commits; returns the plan.
fn step(store: &Store, now: Timestamp) -> Plan {
    let view = store.view();
    let svc = view.get::<Service>("svc").unwrap();
    let plan = reconcile(&view, &svc, now);
    let committed = plan.clone();
    store.update_local(|tx| plan.apply(tx)).unwrap();
    committed
}

fn live_slots(store: &Store) -> Vec<u64> {
    let mut v: Vec<u64> = store
        .view()
        .tasks_by_service("svc")
        .filter(|t| is_wanted(t))
        .map(|t| t.slot)
        .collect();
    v.sort();
    v
}

/// Moves a task's observed state (as an agent would report it).
fn report(store: &Store, task: &Task, state: TaskState, node: &str) {
    store
        .update_local(|tx| {
            let mut t = (*tx.get::<Task>(&task.id).unwrap()).clone();
            t.node_id = Id::from(node);
            t.status.state = state;
            tx.update(t).map(drop)
        })
        .unwrap();
}

fn task_in_slot(store: &Store, slot: u64) -> Task {
    (*store
        .view()
        .tasks_by_service("svc")
        .find(|t| t.slot == slot && is_wanted(t))
        .unwrap())
    .clone()
}

#[test]
fn creates_one_task_per_slot_and_then_nothing() {
    let store = cluster(&service(ServiceMode::Replicated { replicas: 3 }, None));
    let plan = step(&store, t0());
    assert_eq!(plan.create.len(), 3);
    assert_eq!(live_slots(&store), [1, 2, 3]);
    let t = task_in_slot(&store, 2);
    assert_eq!(
        (t.status.state, t.desired_state),
        (TaskState::New, TaskState::Running)
    );
    assert_eq!(t.annotations.name, "web.2");
    assert!(t.node_id.is_empty(), "the scheduler picks the node");
    assert!(
        step(&store, t0()).is_empty(),
        "reconciling again changes nothing"
    );
}

#[test]
fn scales_up_into_free_slots_and_down_from_the_highest() {
    let mut svc = service(ServiceMode::Replicated { replicas: 3 }, None);
    let store = cluster(&svc);
    step(&store, t0());
    for (slot, n) in [(1, "n1"), (2, "n2"), (3, "n3")] {
        report(&store, &task_in_slot(&store, slot), TaskState::Running, n);
    }
    let scale = |store: &Store, svc: &mut Service, replicas| {
        svc.spec.mode = ServiceMode::Replicated { replicas };
        *svc = (*store
            .update_local(|tx| {
                let mut s = (*tx.get::<Service>("svc").unwrap()).clone();
                s.spec.mode = svc.spec.mode.clone();
                tx.update(s)
            })
            .unwrap())
        .clone();
    };
    scale(&store, &mut svc, 5);
    step(&store, t0());
    assert_eq!(live_slots(&store), [1, 2, 3, 4, 5]);
    scale(&store, &mut svc, 2);
    let plan = step(&store, t0());
    assert_eq!(live_slots(&store), [1, 2]);
    let mut removed: Vec<u64> = plan.update.iter().map(|t| t.slot).collect();
    removed.sort();
    assert_eq!(removed, [3, 4, 5]);
    assert!(
        plan.update
            .iter()
            .all(|t| t.desired_state == TaskState::Remove)
    );
    // Slots 4 and 5 were never assigned: deleted on the next pass. Slot 3 ran on
    // n3: it is deleted once its agent reports it shut down.
    step(&store, t0());
    let left: Vec<u64> = store
        .view()
        .tasks_by_service("svc")
        .map(|t| t.slot)
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    let s3 = (*store
        .view()
        .tasks_by_service("svc")
        .find(|t| t.slot == 3)
        .unwrap())
    .clone();
    report(&store, &s3, TaskState::Shutdown, "n3");
    step(&store, t0());
    assert_eq!(store.view().tasks_by_service("svc").count(), 2);
}

#[test]
fn a_failed_task_is_replaced_in_its_slot() {
    let store = cluster(&service(
        ServiceMode::Replicated { replicas: 2 },
        no_delay(),
    ));
    step(&store, t0());
    let first = task_in_slot(&store, 1);
    report(&store, &first, TaskState::Running, "n1");
    report(&store, &task_in_slot(&store, 1), TaskState::Failed, "n1");
    let plan = step(&store, t0());
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].slot, 1);
    let old = store.view().get::<Task>(&first.id).unwrap();
    assert_eq!(old.desired_state, TaskState::Shutdown);
    let new = task_in_slot(&store, 1);
    assert_ne!(new.id, first.id);
    assert_eq!(new.desired_state, TaskState::Running);
    assert!(step(&store, t0()).is_empty());
    assert_eq!(
        store.view().tasks_by_slot(&Id::from("svc"), 1).count(),
        2,
        "history kept"
    );
}

#[test]
fn a_restart_delay_starts_the_replacement_later() {
    let policy = RestartPolicy {
        delay: Duration::from_secs(5),
        ..Default::default()
    };
    let store = cluster(&service(
        ServiceMode::Replicated { replicas: 1 },
        Some(policy),
    ));
    step(&store, t0());
    report(&store, &task_in_slot(&store, 1), TaskState::Rejected, "n1");
    let plan = step(&store, t0());
    assert_eq!(plan.create[0].desired_state, TaskState::Ready);
    assert_eq!(plan.wake_at, Some(t0().add(Duration::from_secs(5))));
    // Not yet due.
    let early = step(&store, t0().add(Duration::from_secs(2)));
    assert!(early.is_empty() && early.wake_at.is_some());
    let due = step(&store, t0().add(Duration::from_secs(5)));
    assert_eq!(due.update.len(), 1);
    assert_eq!(task_in_slot(&store, 1).desired_state, TaskState::Running);
}

#[test]
fn restart_conditions() {
    // on-failure: a clean exit stays down, a failure restarts.
    let policy = RestartPolicy {
        condition: RestartCondition::OnFailure,
        delay: Duration::ZERO,
        ..Default::default()
    };
    let store = cluster(&service(
        ServiceMode::Replicated { replicas: 2 },
        Some(policy),
    ));
    step(&store, t0());
    report(&store, &task_in_slot(&store, 1), TaskState::Complete, "n1");
    report(&store, &task_in_slot(&store, 2), TaskState::Failed, "n2");
    let plan = step(&store, t0());
    assert_eq!(plan.create.iter().map(|t| t.slot).collect::<Vec<_>>(), [2]);
    assert!(
        step(&store, t0()).is_empty(),
        "the completed slot is not refilled"
    );
    assert_eq!(live_slots(&store), [2]);

    // none: nothing restarts.
    let policy = RestartPolicy {
        condition: RestartCondition::None,
        delay: Duration::ZERO,
        ..Default::default()
    };
    let store = cluster(&service(
        ServiceMode::Replicated { replicas: 1 },
        Some(policy),
    ));
    step(&store, t0());
    report(&store, &task_in_slot(&store, 1), TaskState::Failed, "n1");
    let plan = step(&store, t0());
    assert!(plan.create.is_empty());
    assert!(live_slots(&store).is_empty());
    assert!(step(&store, t0()).is_empty());
}

#[test]
fn max_attempts_caps_restarts() {
    let policy = RestartPolicy {
        max_attempts: 2,
        delay: Duration::ZERO,
        ..Default::default()
    };
    let store = cluster(&service(
        ServiceMode::Replicated { replicas: 1 },
        Some(policy),
    ));
    step(&store, t0());
    let mut runs = 1;
    for i in 0..5 {
        report(&store, &task_in_slot(&store, 1), TaskState::Failed, "n1");
        // Later tasks are created later.
        let plan = step(&store, t0().add(Duration::from_secs(i + 1)));
        runs += plan.create.len();
        if live_slots(&store).is_empty() {
            break;
        }
    }
    assert_eq!(runs, 3, "the first run and two restarts");
}

#[test]
fn draining_a_node_moves_its_tasks() {
    let store = cluster(&service(ServiceMode::Replicated { replicas: 3 }, None));
    step(&store, t0());
    for (slot, n) in [(1, "n1"), (2, "n2"), (3, "n3")] {
        report(&store, &task_in_slot(&store, slot), TaskState::Running, n);
    }
    store
        .update_local(|tx| {
            let mut n = (*tx.get::<Node>("n2").unwrap()).clone();
            n.spec.availability = Availability::Drain;
            tx.update(n).map(drop)
        })
        .unwrap();
    let plan = step(&store, t0());
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].desired_state, TaskState::Shutdown);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].slot, 2);
    assert_eq!(
        plan.create[0].desired_state,
        TaskState::Running,
        "no restart delay for a move"
    );
    assert_eq!(live_slots(&store), [1, 2, 3]);
}

#[test]
fn history_is_kept_to_the_retention_limit() {
    let store = cluster(&service(
        ServiceMode::Replicated { replicas: 1 },
        no_delay(),
    ));
    store
        .update_local(|tx| {
            tx.create(Cluster {
                id: Id::from("c"),
                spec: ClusterSpec {
                    annotations: Annotations::named(DEFAULT_CLUSTER_NAME),
                    orchestration: OrchestrationConfig {
                        task_history_retention_limit: 3,
                    },
                    ..Default::default()
                },
                ..Default::default()
            })
            .map(drop)
        })
        .unwrap();
    step(&store, t0());
    for i in 0..6 {
        report(&store, &task_in_slot(&store, 1), TaskState::Failed, "n1");
        step(&store, t0().add(Duration::from_secs(i + 1)));
        step(&store, t0().add(Duration::from_secs(i + 1)));
    }
    let slot = store.view().tasks_by_slot(&Id::from("svc"), 1).count();
    assert_eq!(slot, 3);
    assert_eq!(live_slots(&store), [1]);
}

#[test]
fn removing_a_service_shuts_every_task_down_then_deletes_them() {
    let store = cluster(&service(ServiceMode::Replicated { replicas: 2 }, None));
    step(&store, t0());
    report(&store, &task_in_slot(&store, 1), TaskState::Running, "n1");
    let plan = remove_service_tasks(&store.view(), &Id::from("svc"));
    assert_eq!(plan.update.len(), 2);
    store.update_local(|tx| plan.apply(tx)).unwrap();
    // The unassigned task goes at once; the running one once it stopped.
    let plan = remove_service_tasks(&store.view(), &Id::from("svc"));
    assert_eq!(plan.delete.len(), 1);
    store.update_local(|tx| plan.apply(tx)).unwrap();
    let running = (*store.view().tasks_by_service("svc").next().unwrap()).clone();
    report(&store, &running, TaskState::Shutdown, "n1");
    let plan = remove_service_tasks(&store.view(), &Id::from("svc"));
    store.update_local(|tx| plan.apply(tx)).unwrap();
    assert_eq!(store.view().tasks_by_service("svc").count(), 0);
}

#[test]
fn global_service_runs_once_per_eligible_node() {
    let store = cluster(&service(ServiceMode::Global, no_delay()));
    store
        .update_local(|tx| {
            tx.create(node(
                "down",
                NodeState::Down,
                Availability::Active,
                NodeRole::Worker,
            ))?;
            tx.create(node(
                "drained",
                NodeState::Ready,
                Availability::Drain,
                NodeRole::Worker,
            ))?;
            tx.create(node(
                "mgr",
                NodeState::Ready,
                Availability::Active,
                NodeRole::Manager,
            ))
            .map(drop)
        })
        .unwrap();
    let plan = step(&store, t0());
    let mut nodes: Vec<String> = plan.create.iter().map(|t| t.node_id.to_string()).collect();
    nodes.sort();
    assert_eq!(nodes, ["mgr", "n1", "n2", "n3"]);
    assert!(
        plan.create
            .iter()
            .all(|t| t.slot == 0 && t.annotations.name.starts_with("web."))
    );
    assert!(step(&store, t0()).is_empty());

    // Pause keeps the task; drain moves it away (and it is not replaced there).
    store
        .update_local(|tx| {
            let mut n = (*tx.get::<Node>("n1").unwrap()).clone();
            n.spec.availability = Availability::Pause;
            tx.update(n)?;
            let mut n = (*tx.get::<Node>("n2").unwrap()).clone();
            n.spec.availability = Availability::Drain;
            tx.update(n).map(drop)
        })
        .unwrap();
    let plan = step(&store, t0());
    assert!(plan.create.is_empty(), "{plan:?}");
    assert_eq!(
        plan.update
            .iter()
            .map(|t| t.node_id.to_string())
            .collect::<Vec<_>>(),
        ["n2"]
    );

    // A node that comes up gets its task.
    store
        .update_local(|tx| {
            let mut n = (*tx.get::<Node>("down").unwrap()).clone();
            n.status.state = NodeState::Ready;
            tx.update(n).map(drop)
        })
        .unwrap();
    let plan = step(&store, t0());
    assert_eq!(
        plan.create
            .iter()
            .map(|t| t.node_id.to_string())
            .collect::<Vec<_>>(),
        ["down"]
    );
}

#[test]
fn global_service_follows_constraints() {
    let mut svc = service(ServiceMode::Global, no_delay());
    svc.spec.task.placement = Some(Placement {
        constraints: vec!["node.role==manager".into()],
        ..Default::default()
    });
    let store = cluster(&svc);
    store
        .update_local(|tx| {
            tx.create(node(
                "mgr",
                NodeState::Ready,
                Availability::Active,
                NodeRole::Manager,
            ))
            .map(drop)
        })
        .unwrap();
    let plan = step(&store, t0());
    assert_eq!(
        plan.create
            .iter()
            .map(|t| t.node_id.to_string())
            .collect::<Vec<_>>(),
        ["mgr"]
    );
    // The constraint changes: the manager's task is shut down, workers get one.
    store
        .update_local(|tx| {
            let mut s = (*tx.get::<Service>("svc").unwrap()).clone();
            s.spec.task.placement.as_mut().unwrap().constraints = vec!["node.role!=manager".into()];
            tx.update(s).map(drop)
        })
        .unwrap();
    let plan = step(&store, t0());
    assert_eq!(
        plan.update
            .iter()
            .map(|t| t.node_id.to_string())
            .collect::<Vec<_>>(),
        ["mgr"]
    );
    assert_eq!(plan.create.len(), 3);
}
