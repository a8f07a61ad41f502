//! Property tests of the replicated state machine.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use proptest::prelude::*;
use swarm_core::types::*;
use swarm_core::{Error, Filter, Id, Object, Store, StoreAction, Tables};

/// One operation of a random workload, on a small ID space so that operations
/// collide (updates of missing objects, duplicate creates, name clashes).
#[derive(Clone, Debug)]
enum Op {
    CreateService { id: u8, name: u8 },
    RenameService { id: u8, name: u8 },
    DeleteService { id: u8 },
    CreateNode { id: u8 },
    DrainNode { id: u8 },
    CreateTask { id: u8, service: u8, slot: u8 },
    AssignTask { id: u8, node: u8 },
    AdvanceTask { id: u8, steps: u8 },
    DeleteTask { id: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6u8, 0..4u8).prop_map(|(id, name)| Op::CreateService { id, name }),
        (0..6u8, 0..4u8).prop_map(|(id, name)| Op::RenameService { id, name }),
        (0..6u8).prop_map(|id| Op::DeleteService { id }),
        (0..4u8).prop_map(|id| Op::CreateNode { id }),
        (0..4u8).prop_map(|id| Op::DrainNode { id }),
        (0..20u8, 0..6u8, 0..4u8).prop_map(|(id, service, slot)| Op::CreateTask {
            id,
            service,
            slot
        }),
        (0..20u8, 0..4u8).prop_map(|(id, node)| Op::AssignTask { id, node }),
        (0..20u8, 0..4u8).prop_map(|(id, steps)| Op::AdvanceTask { id, steps }),
        (0..20u8).prop_map(|id| Op::DeleteTask { id }),
    ]
}

fn sid(i: u8) -> String {
    format!("svc{i}")
}
fn nid(i: u8) -> String {
    format!("node{i}")
}
fn tid(i: u8) -> String {
    format!("task{i}")
}

/// Runs one op inside a transaction; errors are part of the workload.
fn run(tx: &mut swarm_core::Tx, op: &Op) -> swarm_core::Result<()> {
    match *op {
        Op::CreateService { id, name } => {
            let mut s = Service {
                id: Id::from(sid(id)),
                ..Default::default()
            };
            s.spec.annotations.name = format!("name{name}");
            tx.create(s).map(drop)
        }
        Op::RenameService { id, name } => {
            let mut s = (*tx
                .get::<Service>(&sid(id))
                .ok_or(Error::InvalidArgument("none".into()))?)
            .clone();
            s.spec.annotations.name = format!("NAME{name}");
            tx.update(s).map(drop)
        }
        Op::DeleteService { id } => tx.delete::<Service>(&sid(id)),
        Op::CreateNode { id } => {
            let mut n = Node {
                id: Id::from(nid(id)),
                ..Default::default()
            };
            n.description = Some(NodeDescription {
                hostname: format!("host{}", id % 2),
                ..Default::default()
            });
            tx.create(n).map(drop)
        }
        Op::DrainNode { id } => {
            let mut n = (*tx
                .get::<Node>(&nid(id))
                .ok_or(Error::InvalidArgument("none".into()))?)
            .clone();
            n.spec.availability = Availability::Drain;
            tx.update(n).map(drop)
        }
        Op::CreateTask { id, service, slot } => tx
            .create(Task {
                id: Id::from(tid(id)),
                service_id: Id::from(sid(service)),
                slot: slot as u64,
                desired_state: TaskState::Running,
                ..Default::default()
            })
            .map(drop),
        Op::AssignTask { id, node } => {
            let mut t = (*tx
                .get::<Task>(&tid(id))
                .ok_or(Error::InvalidArgument("none".into()))?)
            .clone();
            t.node_id = Id::from(nid(node));
            t.status.state = t.status.state.max(TaskState::Assigned);
            tx.update(t).map(drop)
        }
        Op::AdvanceTask { id, steps } => {
            let mut t = (*tx
                .get::<Task>(&tid(id))
                .ok_or(Error::InvalidArgument("none".into()))?)
            .clone();
            let i = TaskState::ALL
                .iter()
                .position(|s| *s == t.status.state)
                .unwrap();
            t.status.state = TaskState::ALL[(i + steps as usize).min(TaskState::ALL.len() - 1)];
            if steps == 3 {
                t.desired_state = TaskState::Shutdown;
            }
            tx.update(t).map(drop)
        }
        Op::DeleteTask { id } => tx.delete::<Task>(&tid(id)),
    }
}

/// Checks every index against a full scan.
fn check_indexes(t: &Tables) {
    let mut by_service: BTreeMap<Id, usize> = BTreeMap::new();
    for task in t.list::<Task>() {
        if !task.service_id.is_empty() {
            *by_service.entry(task.service_id.clone()).or_default() += 1;
            if task.slot != 0 {
                assert!(
                    t.tasks_by_slot(&task.service_id, task.slot)
                        .any(|x| x.id == task.id)
                );
            }
        }
        if !task.node_id.is_empty() {
            assert!(t.tasks_by_node(&task.node_id).any(|x| x.id == task.id));
        }
        assert!(
            t.tasks_by_desired_state(task.desired_state)
                .any(|x| x.id == task.id)
        );
    }
    for (service, n) in &by_service {
        assert_eq!(t.count_tasks_by_service(service), *n);
    }
    let total_desired: usize = TaskState::ALL
        .iter()
        .map(|s| t.tasks_by_desired_state(*s).count())
        .sum();
    assert_eq!(total_desired, t.count::<Task>());
    for svc in t.list::<Service>() {
        assert_eq!(
            t.get_by_name::<Service>(&svc.spec.annotations.name)
                .unwrap()
                .id,
            svc.id
        );
    }
    for node in t.list::<Node>() {
        assert!(t.find_by_name::<Node>(node.name()).any(|n| n.id == node.id));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    /// Batches recorded on one store, applied to another in the same order,
    /// give the same state and the same events.
    #[test]
    fn replaying_batches_gives_equal_state(txs in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..40)) {
        let leader = Store::new();
        let follower = Store::new();
        let mut leader_events = leader.watch(Filter::all());
        let mut follower_events = follower.watch(Filter::all());
        for ops in &txs {
            let mut batch: Vec<StoreAction> = Vec::new();
            let committed = leader.update_local(|tx| {
                for op in ops {
                    // Failed ops are skipped inside the transaction; their
                    // effects never happened.
                    let _ = run(tx, op);
                }
                batch = tx.actions().cloned().collect();
                Ok(())
            });
            prop_assert!(committed.is_ok());
            if !batch.is_empty() {
                follower.apply(leader.index(), &batch).unwrap();
            }
        }
        prop_assert_eq!(leader.snapshot(), follower.snapshot());
        prop_assert_eq!(leader_events.drain(), follower_events.drain());
        check_indexes(&leader.view());
        check_indexes(&follower.view());
    }

    /// The same batches (valid or not) applied to two stores give the same
    /// results and states.
    #[test]
    fn apply_is_deterministic(txs in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..30)) {
        let builder = Store::new();
        let a = Store::new();
        let b = Store::new();
        let mut index = 0;
        for ops in &txs {
            // Build a batch against the builder's state, then apply it everywhere,
            // including to the builder: some batches are stale by then.
            let mut batch = Vec::new();
            let _ = builder.update_local(|tx| {
                for op in ops { let _ = run(tx, op); }
                batch = tx.actions().cloned().collect();
                Err::<(), _>(Error::InvalidArgument("build only".into()))
            });
            index += 2;
            let ra = a.apply(index, &batch);
            let rb = b.apply(index, &batch);
            prop_assert_eq!(&ra, &rb);
            let _ = builder.apply(index, &batch);
        }
        prop_assert_eq!(a.snapshot(), b.snapshot());
        check_indexes(&a.view());
    }

    /// snapshot → restore gives an equal state with working indexes.
    #[test]
    fn snapshot_restore_gives_equal_state(txs in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..30)) {
        let s = Store::new();
        for ops in &txs {
            s.update_local(|tx| { for op in ops { let _ = run(tx, op); } Ok(()) }).unwrap();
        }
        let bytes = s.snapshot();
        let r = Store::new();
        r.restore(&bytes).unwrap();
        prop_assert_eq!(r.snapshot(), bytes);
        prop_assert_eq!(r.index(), s.index());
        check_indexes(&r.view());
        let (vs, vr) = (s.view(), r.view());
        for svc in vs.list::<Service>() {
            prop_assert_eq!(vs.count_tasks_by_service(&svc.id), vr.count_tasks_by_service(&svc.id));
        }
    }

    /// Writers that read the same version race; exactly one wins.
    #[test]
    fn same_read_version_lets_exactly_one_win(writers in 2usize..6) {
        let s = Store::new();
        s.update_local(|tx| tx.create(Node { id: Id::from("n"), ..Default::default() })).unwrap();
        let read = (*s.view().get::<Node>("n").unwrap()).clone();
        let barrier = Arc::new(Barrier::new(writers));
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..writers)
                .map(|i| {
                    let (s, barrier, mut mine) = (s.clone(), barrier.clone(), read.clone());
                    scope.spawn(move || {
                        mine.spec.annotations.labels.insert("writer".into(), i.to_string());
                        barrier.wait();
                        s.update_local(|tx| tx.update(mine))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        prop_assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        let conflicts = results.iter().filter(|r| matches!(r, Err(Error::Conflict { .. }))).count();
        prop_assert_eq!(conflicts, writers - 1);
        // The same race through the replicated path: two batches made from one
        // read, applied in commit order: the first wins, the second conflicts.
        let t = Store::new();
        t.restore(&s.snapshot()).unwrap();
        let read = (*t.view().get::<Node>("n").unwrap()).clone();
        let mut a = read.clone();
        a.spec.availability = Availability::Pause;
        let mut b = read;
        b.spec.availability = Availability::Drain;
        let before = t.index();
        let first = t.apply(before + 1, &[StoreAction::Update(Object::Node(Arc::new(a)))]);
        let second = t.apply(before + 2, &[StoreAction::Update(Object::Node(Arc::new(b)))]);
        prop_assert!(first.is_ok());
        prop_assert!(matches!(second, Err(Error::Conflict { .. })), "{:?}", second);
        prop_assert_eq!(t.view().get::<Node>("n").unwrap().spec.availability, Availability::Pause);
    }
}
