//! The updater driven by hand: a store, a manual clock and a toy agent that
//! moves tasks the way workers would (assign, run, stop, or fail a "bad" image).

use std::sync::Arc;
use std::time::Duration;

use swarm_core::types::*;
use swarm_core::{Id, ManualClock, Store, Timestamp};

use super::*;
use crate::manager::orchestrator::{Plan, is_wanted, reconcile};

fn t0() -> Timestamp {
    Timestamp {
        seconds: 1_000_000,
        nanos: 0,
    }
}

struct Sim {
    store: Store,
    clock: Arc<ManualClock>,
    history: RunHistory,
    next_node: usize,
}

fn spec(image: &str, replicas: u64, update: UpdateConfig) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named("web"),
        task: TaskSpec {
            container: ContainerSpec {
                image: image.into(),
                ..Default::default()
            },
            restart: Some(RestartPolicy {
                delay: Duration::ZERO,
                ..Default::default()
            }),
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas },
        update: Some(update.clone()),
        rollback: Some(update),
        ..Default::default()
    }
}

fn cfg(parallelism: u64, delay_s: u64) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        delay: Duration::from_secs(delay_s),
        ..Default::default()
    }
}

impl Sim {
    /// Three ready nodes and a service at version `v1`, every task running.
    fn new(replicas: u64, update: UpdateConfig) -> Sim {
        Sim::with_mode(ServiceMode::Replicated { replicas }, update)
    }

    fn with_mode(mode: ServiceMode, update: UpdateConfig) -> Sim {
        let clock = Arc::new(ManualClock::new(t0()));
        let store = Store::with_clock(clock.clone());
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
                let mut spec = spec("v1", 0, update);
                spec.mode = mode;
                tx.create(Service {
                    id: Id::from("svc"),
                    spec,
                    spec_version: Some(Version { index: 1 }),
                    ..Default::default()
                })
                .map(drop)
            })
            .unwrap();
        let mut sim = Sim {
            store,
            clock,
            history: RunHistory::new(),
            next_node: 0,
        };
        sim.settle();
        sim
    }

    fn now(&self) -> Timestamp {
        use swarm_core::Clock;
        self.clock.now()
    }

    fn service(&self) -> Arc<Service> {
        self.store.view().get::<Service>("svc").unwrap()
    }

    /// `docker service update`: a new spec, the update status cleared.
    fn update(&self, f: impl FnOnce(&mut ServiceSpec)) {
        self.store
            .update_local(|tx| {
                let mut s = (*tx.get::<Service>("svc").unwrap()).clone();
                s.previous_spec = Some(s.spec.clone());
                s.previous_spec_version = s.spec_version;
                s.spec_version = Some(Version {
                    index: s.spec_version.map_or(1, |v| v.index + 1),
                });
                f(&mut s.spec);
                s.update_status = None;
                tx.update(s).map(drop)
            })
            .unwrap();
    }

    /// One orchestration pass, committed.
    fn step(&mut self) -> Plan {
        let view = self.store.view();
        let svc = view.get::<Service>("svc").unwrap();
        let now = self.now();
        let mut plan = reconcile(&view, &svc, now);
        plan_update(&view, &svc, &self.history, now, &mut plan);
        let committed = plan.clone();
        self.store.update_local(|tx| plan.apply(tx)).unwrap();
        committed
    }

    /// The agents' move: returns whether anything changed.
    fn agents(&mut self) -> bool {
        let now = self.now();
        let tasks: Vec<Arc<Task>> = self.store.view().tasks_by_service("svc").collect();
        let mut changed = false;
        for t in tasks {
            let mut t = (*t).clone();
            let before = (t.node_id.clone(), t.status.state);
            if t.status.state.is_terminal() {
                continue;
            }
            if t.desired_state > TaskState::Running {
                t.status.state = TaskState::Shutdown;
            } else if t.node_id.is_empty() {
                self.next_node += 1;
                t.node_id = Id::from(format!("n{}", self.next_node % 3 + 1).as_str());
                t.status.state = TaskState::Assigned;
            } else if t.desired_state == TaskState::Running && t.status.state < TaskState::Running {
                t.status.state = if t.spec.container.image == "bad" {
                    TaskState::Failed
                } else {
                    TaskState::Running
                };
            }
            if (t.node_id.clone(), t.status.state) != before {
                t.status.timestamp = now;
                self.history.observe(&t);
                self.store
                    .update_local(|tx| tx.update(t).map(drop))
                    .unwrap();
                changed = true;
            }
        }
        changed
    }

    /// Passes and agent moves until nothing changes at this time; checks `inv`
    /// after every move.
    fn settle_checking(&mut self, inv: &dyn Fn(&Sim)) {
        assert!(self.run(50, inv), "no steady state");
    }

    /// At most `n` passes and agent moves; whether a steady state was reached.
    fn run(&mut self, n: usize, inv: &dyn Fn(&Sim)) -> bool {
        for _ in 0..n {
            let plan = self.step();
            inv(self);
            let moved = self.agents();
            inv(self);
            if plan.is_empty() && !moved {
                return true;
            }
        }
        false
    }

    fn settle(&mut self) {
        self.settle_checking(&|_| {});
    }

    fn advance(&mut self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
        self.settle();
    }

    /// Image of the wanted task of each slot, by slot.
    fn images(&self) -> Vec<String> {
        let mut v: Vec<(u64, String)> = self
            .store
            .view()
            .tasks_by_service("svc")
            .filter(|t| is_wanted(t))
            .map(|t| (t.slot, t.spec.container.image.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, i)| i).collect()
    }

    fn running(&self) -> usize {
        self.store
            .view()
            .tasks_by_service("svc")
            .filter(|t| t.status.state == TaskState::Running)
            .count()
    }

    fn status(&self) -> UpdateStatus {
        self.service().update_status.clone().unwrap_or_default()
    }
}

#[test]
fn one_slot_at_a_time_with_a_delay_then_completed_after_the_monitor() {
    let mut sim = Sim::new(3, cfg(1, 1));
    assert_eq!(sim.images(), ["v1", "v1", "v1"]);
    assert_eq!(sim.service().update_status, None, "no update yet");
    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    assert_eq!(sim.images(), ["v2", "v1", "v1"]);
    let st = sim.status();
    assert_eq!(st.state, UpdateState::Updating);
    assert_eq!(st.message, "update in progress");
    assert_eq!(st.started_at, Some(t0()));
    sim.advance(1);
    assert_eq!(sim.images(), ["v2", "v2", "v1"]);
    sim.advance(1);
    assert_eq!(sim.images(), ["v2", "v2", "v2"]);
    assert_eq!(sim.status().state, UpdateState::Updating);
    // The last slot's delay (1 s) and the monitor period (5 s) must pass.
    sim.advance(5);
    assert_eq!(sim.status().state, UpdateState::Updating);
    sim.advance(1);
    let st = sim.status();
    assert_eq!(
        (st.state, st.message.as_str()),
        (UpdateState::Completed, "update completed")
    );
    assert_eq!(st.completed_at, Some(sim.now()));
    assert_eq!(sim.running(), 3);
    assert!(sim.step().is_empty(), "nothing more to do");
}

#[test]
fn parallelism_two_replaces_two_slots_per_batch() {
    let mut sim = Sim::new(5, cfg(2, 1));
    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    assert_eq!(sim.images(), ["v2", "v2", "v1", "v1", "v1"]);
    sim.advance(1);
    assert_eq!(sim.images(), ["v2", "v2", "v2", "v2", "v1"]);
    sim.advance(1);
    assert_eq!(sim.images(), ["v2"; 5]);
}

#[test]
fn parallelism_zero_replaces_everything_at_once() {
    let mut sim = Sim::new(4, cfg(0, 0));
    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    assert_eq!(sim.images(), ["v2"; 4]);
}

#[test]
fn stop_first_starts_the_new_task_only_after_the_old_one_stopped() {
    let mut sim = Sim::new(1, cfg(1, 0));
    sim.update(|s| s.task.container.image = "v2".into());
    sim.step();
    let view = sim.store.view();
    let tasks: Vec<Arc<Task>> = view.tasks_by_service("svc").collect();
    let new = tasks
        .iter()
        .find(|t| t.spec.container.image == "v2")
        .unwrap();
    let old = tasks
        .iter()
        .find(|t| t.spec.container.image == "v1")
        .unwrap();
    assert_eq!(new.desired_state, TaskState::Ready);
    assert_eq!(old.desired_state, TaskState::Shutdown);
    assert_eq!(old.status.state, TaskState::Running);
    // Passes before the old task stops leave the new one waiting.
    let p = sim.step();
    assert!(p.update.iter().all(|t| t.id != new.id), "{p:#?}");
    sim.settle();
    assert_eq!(sim.images(), ["v2"]);
    assert_eq!(sim.running(), 1);
}

#[test]
fn start_first_keeps_every_replica_running_throughout() {
    let mut c = cfg(1, 0);
    c.order = UpdateOrder::StartFirst;
    let mut sim = Sim::new(3, c);
    sim.update(|s| s.task.container.image = "v2".into());
    for _ in 0..4 {
        sim.settle_checking(&|s: &Sim| assert!(s.running() >= 3, "{} running", s.running()));
        sim.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.images(), ["v2"; 3]);
}

#[test]
fn a_failing_version_pauses_and_an_update_with_a_fix_resumes() {
    let mut sim = Sim::new(3, cfg(1, 0));
    sim.update(|s| s.task.container.image = "bad".into());
    // The bad version fails and is restarted over and over: no steady state.
    sim.run(4, &|_| {});
    let st = sim.status();
    assert_eq!(st.state, UpdateState::Paused);
    let id = st
        .message
        .strip_prefix("update paused due to failure or early termination of task ")
        .unwrap();
    let failed = sim.store.view().get::<Task>(id).unwrap();
    assert_eq!(failed.status.state, TaskState::Failed);
    assert_eq!(failed.spec.container.image, "bad");
    sim.clock.advance(Duration::from_secs(10));
    sim.run(20, &|_| {});
    let images = sim.images();
    assert_eq!(
        &images[1..],
        ["v1", "v1"],
        "the rest stays on the old version"
    );
    assert_eq!(sim.status().state, UpdateState::Paused);

    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    sim.advance(6);
    assert_eq!(sim.images(), ["v2"; 3]);
    assert_eq!(sim.status().state, UpdateState::Completed);
}

#[test]
fn failure_action_rollback_restores_the_previous_spec() {
    let mut c = cfg(1, 0);
    c.failure_action = FailureAction::Rollback;
    let mut sim = Sim::new(3, c);
    sim.update(|s| s.task.container.image = "bad".into());
    sim.run(3, &|_| {});
    let svc = sim.service();
    assert_eq!(svc.spec.task.container.image, "v1");
    assert_eq!(svc.previous_spec, None);
    let st = sim.status();
    assert_eq!(st.state, UpdateState::RollbackStarted);
    assert!(
        st.message
            .starts_with("update rolled back due to failure or early termination of task "),
        "{}",
        st.message
    );
    sim.advance(6);
    assert_eq!(sim.images(), ["v1"; 3]);
    let st = sim.status();
    assert_eq!(
        (st.state, st.message.as_str()),
        (UpdateState::RollbackCompleted, "rollback completed")
    );
}

#[test]
fn max_failure_ratio_tolerates_some_failures() {
    let mut c = cfg(0, 0);
    c.max_failure_ratio = 0.5;
    let mut sim = Sim::new(4, c);
    // One of four slots fails (25 % <= 50 %): the update goes on.
    sim.update(|s| s.task.container.image = "v2".into());
    sim.step();
    let first = sim
        .store
        .view()
        .tasks_by_service("svc")
        .find(|t| t.spec.container.image == "v2")
        .unwrap();
    let mut t = (*first).clone();
    t.node_id = Id::from("n1");
    t.status.state = TaskState::Failed;
    sim.store.update_local(|tx| tx.update(t).map(drop)).unwrap();
    sim.settle();
    assert_eq!(sim.status().state, UpdateState::Updating);
    sim.advance(6);
    assert_eq!(sim.status().state, UpdateState::Completed);
    assert_eq!(sim.images(), ["v2"; 4]);
}

#[test]
fn force_update_redeploys_every_task_without_a_change() {
    let mut sim = Sim::new(2, cfg(0, 0));
    let before: Vec<Id> = sim
        .store
        .view()
        .tasks_by_service("svc")
        .map(|t| t.id.clone())
        .collect();
    sim.update(|s| s.task.force_update += 1);
    sim.settle();
    sim.advance(6);
    let after: Vec<Id> = sim
        .store
        .view()
        .tasks_by_service("svc")
        .filter(|t| is_wanted(t))
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|id| !before.contains(id)));
    assert_eq!(sim.status().state, UpdateState::Completed);
}

#[test]
fn a_new_leader_with_no_history_finishes_the_update() {
    let mut sim = Sim::new(3, cfg(1, 1));
    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    sim.history = RunHistory::new();
    for t in sim.store.view().tasks_by_service("svc") {
        sim.history.observe(&t);
    }
    sim.advance(1);
    sim.advance(1);
    sim.advance(7);
    assert_eq!(sim.images(), ["v2"; 3]);
    assert_eq!(sim.status().state, UpdateState::Completed);
}

#[test]
fn scaling_during_an_update_keeps_the_count_and_finishes() {
    let mut sim = Sim::new(3, cfg(1, 1));
    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    sim.update(|s| s.mode = ServiceMode::Replicated { replicas: 5 });
    sim.settle();
    for _ in 0..10 {
        sim.advance(1);
    }
    assert_eq!(sim.images(), ["v2"; 5]);
    assert_eq!(sim.status().state, UpdateState::Completed);
}

#[test]
fn a_global_service_is_updated_node_by_node() {
    let mut sim = Sim::with_mode(ServiceMode::Global, cfg(1, 1));
    assert_eq!(sim.images(), ["v1"; 3]);
    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    let count = |sim: &Sim| sim.images().iter().filter(|i| *i == "v2").count();
    assert_eq!(count(&sim), 1);
    sim.advance(1);
    assert_eq!(count(&sim), 2);
    sim.advance(1);
    assert_eq!(count(&sim), 3);
    let mut nodes: Vec<Id> = sim
        .store
        .view()
        .tasks_by_service("svc")
        .filter(|t| is_wanted(t))
        .map(|t| t.node_id.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "still one task per node");
    sim.advance(6);
    assert_eq!(sim.status().state, UpdateState::Completed);
}

#[test]
fn a_global_service_leaves_a_paused_node_on_the_old_version() {
    let mut sim = Sim::with_mode(ServiceMode::Global, cfg(0, 0));
    sim.store
        .update_local(|tx| {
            let mut n = (*tx.get::<Node>("n2").unwrap()).clone();
            n.spec.availability = Availability::Pause;
            tx.update(n).map(drop)
        })
        .unwrap();
    sim.update(|s| s.task.container.image = "v2".into());
    sim.settle();
    sim.advance(6);
    let on = |node: &str| {
        sim.store
            .view()
            .tasks_by_service("svc")
            .filter(|t| is_wanted(t) && t.node_id == node)
            .map(|t| t.spec.container.image.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(on("n1"), ["v2"]);
    assert_eq!(on("n2"), ["v1"], "a paused node keeps its task");
    assert_eq!(on("n3"), ["v2"]);
    assert_eq!(sim.status().state, UpdateState::Completed);
}

#[test]
fn a_failing_rollback_pauses_instead_of_rolling_back_again() {
    let mut c = cfg(0, 0);
    c.failure_action = FailureAction::Continue;
    let mut sim = Sim::new(2, c);
    // A broken version goes out in full (failures do not stop it), its rollback
    // config asking for a rollback on failure...
    sim.update(|s| {
        s.task.container.image = "bad".into();
        let mut r = cfg(0, 0);
        r.failure_action = FailureAction::Rollback;
        s.rollback = Some(r);
    });
    sim.run(6, &|_| {});
    // ...then a good one, with rollback on failure, works: the previous spec is
    // the broken one.
    sim.update(|s| {
        s.task.container.image = "v2".into();
        let mut u = cfg(0, 0);
        u.failure_action = FailureAction::Rollback;
        s.update = Some(u.clone());
        s.rollback = Some(u);
    });
    sim.run(6, &|_| {});
    sim.clock.advance(Duration::from_secs(6));
    sim.run(6, &|_| {});
    assert_eq!(sim.status().state, UpdateState::Completed);
    // A manual rollback to the broken spec fails: it pauses, it does not roll
    // back the rollback.
    sim.store
        .update_local(|tx| {
            let mut s = (*tx.get::<Service>("svc").unwrap()).clone();
            let prev = s.previous_spec.take().unwrap();
            s.previous_spec = Some(std::mem::replace(&mut s.spec, prev));
            s.update_status = Some(UpdateStatus {
                state: UpdateState::RollbackStarted,
                started_at: Some(tx.now()),
                completed_at: None,
                message: "manually requested rollback".into(),
            });
            tx.update(s).map(drop)
        })
        .unwrap();
    sim.run(4, &|_| {});
    let st = sim.status();
    assert_eq!(st.state, UpdateState::RollbackPaused);
    assert!(
        st.message
            .starts_with("rollback paused due to failure or early termination of task "),
        "{}",
        st.message
    );
    assert_eq!(sim.service().spec.task.container.image, "bad");
}

#[test]
fn start_first_keeps_the_old_task_while_the_new_one_fails() {
    let mut c = cfg(1, 0);
    c.order = UpdateOrder::StartFirst;
    let mut sim = Sim::new(2, c);
    sim.update(|s| s.task.container.image = "bad".into());
    sim.run(6, &|_| {});
    assert_eq!(sim.status().state, UpdateState::Paused);
    let running: Vec<String> = sim
        .store
        .view()
        .tasks_by_service("svc")
        .filter(|t| t.status.state == TaskState::Running && is_wanted(t))
        .map(|t| t.spec.container.image.clone())
        .collect();
    assert_eq!(running, ["v1", "v1"], "both slots still served by v1");
}
