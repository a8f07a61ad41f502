//! Job planning driven by hand over a store.

use std::time::Duration;

use swarm_core::types::*;
use swarm_core::{Id, Store, Timestamp};

use super::*;
use crate::manager::orchestrator::reconcile;

fn t0() -> Timestamp {
    Timestamp {
        seconds: 1_000_000,
        nanos: 0,
    }
}

fn job(mode: ServiceMode) -> Service {
    Service {
        id: Id::from("job"),
        spec: ServiceSpec {
            annotations: Annotations::named("batch"),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "busybox".into(),
                    ..Default::default()
                },
                restart: Some(RestartPolicy {
                    delay: Duration::ZERO,
                    ..Default::default()
                }),
                ..Default::default()
            },
            mode,
            ..Default::default()
        },
        job_status: Some(JobStatus::default()),
        ..Default::default()
    }
}

fn store_with(svc: &Service) -> Store {
    let store = Store::new();
    store
        .update_local(|tx| {
            for n in ["n1", "n2", "n3"] {
                tx.create(Node {
                    id: Id::from(n),
                    status: NodeStatus {
                        state: NodeState::Ready,
                        ..Default::default()
                    },
                    ..Default::default()
                })?;
            }
            tx.create(svc.clone()).map(drop)
        })
        .unwrap();
    store
}

fn step(store: &Store) -> Plan {
    let view = store.view();
    let svc = view.get::<Service>("job").unwrap();
    let plan = reconcile(&view, &svc, t0());
    let out = plan.clone();
    store.update_local(|tx| plan.apply(tx)).unwrap();
    out
}

/// Live tasks (wanted, not ended).
fn live(store: &Store) -> Vec<Arc<Task>> {
    let mut v: Vec<Arc<Task>> = store
        .view()
        .tasks_by_service("job")
        .filter(|t| is_wanted(t) && !t.status.state.is_terminal())
        .collect();
    v.sort_by_key(|t| t.slot);
    v
}

fn report(store: &Store, id: &Id, state: TaskState) {
    store
        .update_local(|tx| {
            let mut t = (*tx.get::<Task>(id).unwrap()).clone();
            if t.node_id.is_empty() {
                t.node_id = Id::from("n1");
            }
            t.status.state = state;
            tx.update(t).map(drop)
        })
        .unwrap();
}

#[test]
fn a_replicated_job_runs_its_completions_max_concurrent_at_a_time() {
    let store = store_with(&job(ServiceMode::ReplicatedJob {
        max_concurrent: 2,
        total_completions: 5,
    }));
    step(&store);
    let l = live(&store);
    assert_eq!(l.iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2]);
    assert!(
        l.iter()
            .all(|t| t.job_iteration == Some(Version { index: 0 }))
    );
    assert!(step(&store).is_empty(), "two at a time");

    // One completes: a third run starts in a fresh slot.
    report(&store, &l[0].id, TaskState::Complete);
    step(&store);
    assert_eq!(
        live(&store).iter().map(|t| t.slot).collect::<Vec<_>>(),
        [2, 3]
    );
    // One fails: replaced in its slot.
    report(&store, &l[1].id, TaskState::Failed);
    let p = step(&store);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].slot, 2);
    // Everything completes.
    for _ in 0..5 {
        for t in live(&store) {
            report(&store, &t.id, TaskState::Complete);
        }
        step(&store);
    }
    let p = job_progress(&store.view(), &store.view().get::<Service>("job").unwrap());
    assert_eq!(
        p,
        JobProgress {
            completed: 5,
            running: 0,
            desired: 5
        }
    );
    assert!(live(&store).is_empty());
    assert!(step(&store).is_empty(), "completed tasks are not restarted");
}

#[test]
fn a_new_iteration_retires_the_old_runs_and_starts_again() {
    let store = store_with(&job(ServiceMode::ReplicatedJob {
        max_concurrent: 1,
        total_completions: 1,
    }));
    step(&store);
    let first = live(&store)[0].clone();
    report(&store, &first.id, TaskState::Complete);
    assert!(step(&store).is_empty());
    store
        .update_local(|tx| {
            let mut s = (*tx.get::<Service>("job").unwrap()).clone();
            s.job_status = Some(JobStatus {
                job_iteration: Version { index: 1 },
                last_execution: None,
            });
            tx.update(s).map(drop)
        })
        .unwrap();
    step(&store);
    let l = live(&store);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].job_iteration, Some(Version { index: 1 }));
    let old = store.view().get::<Task>(&first.id).unwrap();
    assert_eq!(old.desired_state, TaskState::Shutdown, "history now");
}

#[test]
fn a_global_job_runs_once_on_each_node() {
    let store = store_with(&job(ServiceMode::GlobalJob));
    step(&store);
    let l = live(&store);
    assert_eq!(l.len(), 3);
    for t in &l {
        report(&store, &t.id, TaskState::Complete);
    }
    assert!(step(&store).is_empty(), "no second run");
    let p = job_progress(&store.view(), &store.view().get::<Service>("job").unwrap());
    assert_eq!((p.completed, p.desired), (3, 3));
}
