//! The driver against a real store: events in, assignments out.

use std::sync::Arc;

use futures::StreamExt;
use futures::executor::block_on;
use swarm_core::types::*;
use swarm_core::{Filter as WatchFilter, Kind, Store, testing};
use swarm_sched::{
    ASSIGNED_MESSAGE, Driver, NodeView, Plan, Scheduler, SpreadScheduler, TickReport,
};

fn add_nodes(store: &Store, ids: &[&str]) {
    store
        .update_local(|tx| {
            for id in ids {
                tx.create(testing::node(id, id))?;
            }
            Ok(())
        })
        .unwrap();
}

/// Creates `count` PENDING tasks of service `svc` (IDs `<svc>.<i>`).
fn add_tasks(store: &Store, svc: &str, count: usize, f: impl Fn(&mut Task)) {
    let service = testing::service(svc, svc, "img", count as u64);
    store
        .update_local(|tx| {
            for i in 1..=count {
                let mut t = testing::task(&format!("{svc}.{i}"), &service, i as u64);
                t.status.state = TaskState::Pending;
                f(&mut t);
                tx.create(t)?;
            }
            Ok(())
        })
        .unwrap();
}

fn task(store: &Store, id: &str) -> Arc<Task> {
    store.view().get::<Task>(id).unwrap()
}

fn tick(driver: &mut Driver) -> TickReport {
    block_on(driver.tick()).unwrap()
}

fn set_availability(store: &Store, id: &str, availability: Availability) {
    let mut n = (*store.view().get::<Node>(id).unwrap()).clone();
    n.spec.availability = availability;
    store.update_local(|tx| tx.update(n)).unwrap();
}

fn reserve_all_memory(t: &mut Task) {
    t.spec.resources = Some(ResourceRequirements {
        limits: None,
        reservations: Some(Resources {
            memory_bytes: 8 << 30,
            ..Default::default()
        }),
    });
}

#[test]
fn assigns_pending_tasks_and_writes_swarmkit_status() {
    let store = Store::new();
    add_nodes(&store, &["n1", "n2"]);
    add_tasks(&store, "web", 4, |_| {});
    let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
    let report = tick(&mut driver);
    assert_eq!((report.considered, report.assigned), (4, 4));
    let t = task(&store, "web.1");
    assert_eq!(t.status.state, TaskState::Assigned);
    assert_eq!(t.status.message, ASSIGNED_MESSAGE);
    assert_eq!(t.node_id.as_str(), "n1");
    assert_eq!(store.view().tasks_by_node("n2").count(), 2);
    // Its own writes come back as events and change nothing.
    let report = tick(&mut driver);
    assert_eq!((report.considered, report.assigned), (0, 0));
    assert_eq!(driver.view().node("n1").unwrap().service_tasks("web"), 2);
    assert_eq!(driver.pending_count(), 0);
}

#[test]
fn ignores_tasks_not_pending_or_not_wanted() {
    let store = Store::new();
    add_nodes(&store, &["n1"]);
    add_tasks(&store, "new", 1, |t| t.status.state = TaskState::New);
    add_tasks(&store, "gone", 1, |t| t.desired_state = TaskState::Shutdown);
    let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
    assert_eq!(tick(&mut driver).considered, 0);
    assert!(task(&store, "new.1").node_id.is_empty());
}

#[test]
fn unplaceable_task_keeps_reason_and_is_retried_when_a_node_joins() {
    let store = Store::new();
    add_nodes(&store, &["n1"]);
    set_availability(&store, "n1", Availability::Drain);
    let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
    add_tasks(&store, "web", 1, |_| {});
    let report = tick(&mut driver);
    assert_eq!(report.unplaced, 1);
    let t = task(&store, "web.1");
    assert_eq!(t.status.state, TaskState::Pending);
    assert_eq!(
        t.status.err,
        "no suitable node (1 node not available for new tasks)"
    );
    // Nothing changed: the error is not written again, the task not retried.
    assert_eq!(tick(&mut driver).considered, 0);
    let version = task(&store, "web.1").meta.version;
    assert_eq!(tick(&mut driver).considered, 0);
    assert_eq!(task(&store, "web.1").meta.version, version);

    add_nodes(&store, &["n2"]);
    let report = tick(&mut driver);
    assert_eq!(report.assigned, 1);
    let t = task(&store, "web.1");
    assert_eq!(t.node_id.as_str(), "n2");
    assert!(t.status.err.is_empty());
}

#[test]
fn drained_node_takes_no_new_tasks() {
    let store = Store::new();
    add_nodes(&store, &["n1", "n2"]);
    let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
    set_availability(&store, "n1", Availability::Drain);
    add_tasks(&store, "web", 3, |_| {});
    tick(&mut driver);
    assert_eq!(store.view().tasks_by_node("n2").count(), 3);
    assert!(!driver.view().node("n1").unwrap().is_schedulable());

    set_availability(&store, "n1", Availability::Active);
    add_tasks(&store, "api", 2, |_| {});
    tick(&mut driver);
    // n1 is empty, n2 has 3 tasks: api goes to n1 first, then spreads.
    assert_eq!(task(&store, "api.1").node_id.as_str(), "n1");
    assert_eq!(task(&store, "api.2").node_id.as_str(), "n2");
}

#[test]
fn finished_task_frees_resources_for_a_waiting_one() {
    let store = Store::new();
    add_nodes(&store, &["n1"]);
    let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
    add_tasks(&store, "db", 2, reserve_all_memory);
    let report = tick(&mut driver);
    assert_eq!((report.assigned, report.unplaced), (1, 1));
    let waiting = if task(&store, "db.1").node_id.is_empty() {
        "db.2"
    } else {
        "db.1"
    };
    let mut done = (*task(&store, waiting)).clone();
    done.status.state = TaskState::Failed;
    store.update_local(|tx| tx.update(done)).unwrap();
    let report = tick(&mut driver);
    assert_eq!(report.assigned, 1);
    assert_eq!(store.view().tasks_by_node("n1").count(), 2);
    assert_eq!(driver.view().node("n1").unwrap().task_count(), 1);
}

/// Changes a task in the store while the scheduler decides, so the write-back
/// finds it at another version.
struct Meddler {
    store: Store,
    victim: &'static str,
}

impl Scheduler for Meddler {
    fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
        if let Some(t) = self.store.view().get::<Task>(self.victim) {
            let mut t = (*t).clone();
            t.annotations.labels.insert("touched".into(), "yes".into());
            self.store.update_local(|tx| tx.update(t)).unwrap();
        }
        self.victim = "none";
        SpreadScheduler.schedule(view, tasks)
    }
}

#[test]
fn only_conflicting_tasks_are_retried() {
    let store = Store::new();
    add_nodes(&store, &["n1", "n2"]);
    add_tasks(&store, "web", 3, |_| {});
    let meddler = Meddler {
        store: store.clone(),
        victim: "web.2",
    };
    let mut driver = Driver::new(store.clone(), Box::new(meddler));
    let report = tick(&mut driver);
    assert_eq!((report.assigned, report.conflicts), (2, 1));
    assert!(task(&store, "web.2").node_id.is_empty());
    let report = tick(&mut driver);
    assert_eq!((report.considered, report.assigned), (1, 1));
    assert_eq!(task(&store, "web.2").status.state, TaskState::Assigned);
    // Counts in the view match the store: one task per node plus one.
    let v = driver.view();
    let total: u32 = v.nodes().map(|n| n.active_tasks()).sum();
    assert_eq!(total, 3);
}

/// Places every task on a fixed node, whatever its state.
struct Stubborn(&'static str);

impl Scheduler for Stubborn {
    fn schedule(&mut self, _: &NodeView, tasks: &[Arc<Task>]) -> Plan {
        let mut plan = Plan::default();
        for t in tasks {
            plan.place(&t.id, &self.0.into());
        }
        plan
    }
}

#[test]
fn invalid_placements_are_refused() {
    let store = Store::new();
    add_nodes(&store, &["n1"]);
    set_availability(&store, "n1", Availability::Pause);
    add_tasks(&store, "web", 1, |_| {});
    let mut driver = Driver::new(store.clone(), Box::new(Stubborn("n1")));
    let report = tick(&mut driver);
    assert_eq!((report.assigned, report.rejected), (0, 1));
    assert!(task(&store, "web.1").node_id.is_empty());

    let mut driver = Driver::new(store.clone(), Box::new(Stubborn("ghost")));
    assert_eq!(tick(&mut driver).rejected, 1);
}

#[test]
fn preassigned_tasks_are_checked_on_their_node() {
    let store = Store::new();
    add_nodes(&store, &["n1", "n2"]);
    set_availability(&store, "n2", Availability::Drain);
    add_tasks(&store, "global", 1, |t| t.node_id = "n1".into());
    add_tasks(&store, "other", 1, |t| t.node_id = "n2".into());
    let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
    let report = tick(&mut driver);
    assert_eq!((report.assigned, report.unplaced), (1, 1));
    assert_eq!(task(&store, "global.1").status.state, TaskState::Assigned);
    let t = task(&store, "other.1");
    assert_eq!(t.status.state, TaskState::Pending);
    assert_eq!(
        t.status.err,
        "no suitable node (1 node not available for new tasks)"
    );
}

#[test]
fn run_follows_the_store_until_stopped() {
    let store = Store::new();
    add_nodes(&store, &["n1", "n2", "n3"]);
    let driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let handle = std::thread::spawn(move || {
        block_on(driver.run(async {
            let _ = stop_rx.await;
        }))
    });
    let mut watch = store.watch(WatchFilter::kinds([Kind::Task]));
    add_tasks(&store, "web", 30, |_| {});
    let mut assigned = 0;
    block_on(async {
        while assigned < 30 {
            let event = watch.next().await.unwrap();
            for c in event.changes {
                let t = c.object.downcast::<Task>().unwrap();
                if t.status.state == TaskState::Assigned {
                    assigned += 1;
                }
            }
        }
    });
    stop_tx.send(()).unwrap();
    handle.join().unwrap().unwrap();
    for n in ["n1", "n2", "n3"] {
        assert_eq!(store.view().tasks_by_node(n).count(), 10);
    }
}

#[test]
fn large_queues_are_split_into_passes_and_chunks() {
    let store = Store::new();
    add_nodes(&store, &["n1", "n2"]);
    add_tasks(&store, "web", 5, |_| {});
    let config = swarm_sched::DriverConfig {
        max_writes_per_transaction: 1,
        max_tasks_per_pass: 2,
    };
    let mut driver = Driver::with_config(store.clone(), Box::new(SpreadScheduler), config);
    let index = store.index();
    let assigned: Vec<usize> = (0..3).map(|_| tick(&mut driver).assigned).collect();
    assert_eq!(assigned, [2, 2, 1]);
    // One transaction per write.
    assert_eq!(store.index(), index + 5);
    assert_eq!(store.view().tasks_by_node("n1").count(), 3);
}

#[test]
fn the_run_loop_can_be_spawned_on_a_multi_threaded_runtime() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let driver = Driver::new(Store::new(), Box::new(SpreadScheduler));
    let run = driver.run(futures::future::ready(()));
    assert_send(&run);
    // A stop that is already complete ends the loop after its first tick.
    block_on(run).unwrap();
}
