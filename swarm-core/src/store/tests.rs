//! Unit tests of the store: every index, every error, transactions, watches,
//! snapshots.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::id::Id;
use crate::testing::{node, service, task};
use crate::time::{ManualClock, Timestamp};
use crate::types::*;

fn store() -> Store {
    Store::new()
}

fn seed(s: &Store) {
    s.update_local(|tx| {
        let web = tx.create(service("svc-web", "web", "nginx", 2))?;
        let db = tx.create(service("svc-db", "db", "redis", 1))?;
        tx.create(node("node-a", "alpha"))?;
        tx.create(node("node-b", "beta"))?;
        let mut t1 = task("task-1", &web, 1);
        t1.node_id = Id::from("node-a");
        tx.create(t1)?;
        let mut t2 = task("task-2", &web, 2);
        t2.node_id = Id::from("node-b");
        tx.create(t2)?;
        tx.create(task("task-3", &db, 1))?;
        Ok(())
    })
    .unwrap();
}

fn ids(tasks: impl Iterator<Item = Arc<Task>>) -> Vec<String> {
    let mut v: Vec<String> = tasks.map(|t| t.id.to_string()).collect();
    v.sort();
    v
}

#[test]
fn get_and_count_by_kind() {
    let s = store();
    seed(&s);
    let v = s.view();
    assert_eq!(v.count::<Service>(), 2);
    assert_eq!(v.count::<Node>(), 2);
    assert_eq!(v.count::<Task>(), 3);
    assert_eq!(
        v.get::<Service>("svc-web").unwrap().spec.annotations.name,
        "web"
    );
    assert!(v.get::<Service>("nope").is_none());
    assert!(v.get::<Node>("svc-web").is_none(), "kinds do not share IDs");
    assert_eq!(v.list::<Task>().count(), 3);
}

#[test]
fn whole_transaction_commits_at_one_index() {
    let s = store();
    seed(&s);
    let v = s.view();
    assert_eq!(v.index(), 1);
    for t in v.list::<Task>() {
        assert_eq!(t.meta.version.index, 1);
    }
}

#[test]
fn task_indexes_by_service_node_slot_and_desired_state() {
    let s = store();
    seed(&s);
    let v = s.view();
    assert_eq!(ids(v.tasks_by_service("svc-web")), ["task-1", "task-2"]);
    assert_eq!(ids(v.tasks_by_service("svc-db")), ["task-3"]);
    assert_eq!(v.count_tasks_by_service("svc-web"), 2);
    assert_eq!(ids(v.tasks_by_node("node-a")), ["task-1"]);
    assert_eq!(ids(v.tasks_by_node("node-b")), ["task-2"]);
    assert_eq!(ids(v.tasks_by_slot(&Id::from("svc-web"), 2)), ["task-2"]);
    assert_eq!(
        ids(v.tasks_by_desired_state(TaskState::Running)),
        ["task-1", "task-2", "task-3"]
    );
    assert_eq!(v.tasks_by_desired_state(TaskState::Shutdown).count(), 0);
}

#[test]
fn task_indexes_follow_updates_and_removals() {
    let s = store();
    seed(&s);
    s.update_local(|tx| {
        let mut t = (*tx.get::<Task>("task-3").unwrap()).clone();
        t.node_id = Id::from("node-a");
        t.desired_state = TaskState::Shutdown;
        tx.update(t)?;
        tx.delete::<Task>("task-1")
    })
    .unwrap();
    let v = s.view();
    assert_eq!(ids(v.tasks_by_node("node-a")), ["task-3"]);
    assert_eq!(
        ids(v.tasks_by_desired_state(TaskState::Shutdown)),
        ["task-3"]
    );
    assert_eq!(
        ids(v.tasks_by_desired_state(TaskState::Running)),
        ["task-2"]
    );
    assert_eq!(ids(v.tasks_by_service("svc-web")), ["task-2"]);
    assert_eq!(v.tasks_by_slot(&Id::from("svc-web"), 1).count(), 0);
}

#[test]
fn task_moving_to_another_service_and_slot_is_reindexed() {
    let s = store();
    seed(&s);
    s.update_local(|tx| {
        let mut t = (*tx.get::<Task>("task-3").unwrap()).clone();
        t.service_id = Id::from("svc-web");
        t.slot = 3;
        tx.update(t).map(|_| ())
    })
    .unwrap();
    let v = s.view();
    assert_eq!(
        ids(v.tasks_by_service("svc-web")),
        ["task-1", "task-2", "task-3"]
    );
    assert_eq!(v.count_tasks_by_service("svc-db"), 0);
    assert_eq!(ids(v.tasks_by_slot(&Id::from("svc-web"), 3)), ["task-3"]);
    assert_eq!(v.tasks_by_slot(&Id::from("svc-db"), 1).count(), 0);
}

#[test]
fn names_are_unique_case_insensitively_for_services() {
    let s = store();
    seed(&s);
    let err = s
        .update_local(|tx| tx.create(service("svc-x", "WEB", "nginx", 1)))
        .unwrap_err();
    assert_eq!(
        err,
        Error::NameConflict {
            kind: Kind::Service,
            name: "WEB".into(),
            id: Id::from("svc-web")
        }
    );
    assert!(err.to_string().contains("already in use"));
    assert_eq!(s.view().count::<Service>(), 2, "nothing changed");
    // Renaming onto a taken name fails too; renaming to a free one moves the index.
    let mut db = (*s.view().get::<Service>("svc-db").unwrap()).clone();
    db.spec.annotations.name = "Web".into();
    assert!(matches!(
        s.update_local(|tx| tx.update(db.clone())),
        Err(Error::NameConflict { .. })
    ));
    db.spec.annotations.name = "cache".into();
    s.update_local(|tx| tx.update(db)).unwrap();
    let v = s.view();
    assert_eq!(v.get_by_name::<Service>("CACHE").unwrap().id, "svc-db");
    assert!(v.get_by_name::<Service>("db").is_none());
}

#[test]
fn node_names_may_repeat() {
    let s = store();
    s.update_local(|tx| {
        tx.create(node("n1", "same"))?;
        tx.create(node("n2", "same"))?;
        Ok(())
    })
    .unwrap();
    let v = s.view();
    assert_eq!(v.find_by_name::<Node>("same").count(), 2);
    assert!(v.get_by_name::<Node>("same").is_none());
    let err = v.resolve::<Node>("same").unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("ambiguous")),
        "{err}"
    );
}

#[test]
fn other_unique_kinds_conflict_on_names() {
    let s = store();
    let net = |id: &str, name: &str| Network {
        id: Id::from(id),
        spec: NetworkSpec {
            annotations: Annotations::named(name),
            ..Default::default()
        },
        ..Default::default()
    };
    s.update_local(|tx| tx.create(net("n1", "ingress")))
        .unwrap();
    assert!(matches!(
        s.update_local(|tx| tx.create(net("n2", "ingress"))),
        Err(Error::NameConflict { .. })
    ));
    let secret = |id: &str| Secret {
        id: Id::from(id),
        spec: SecretSpec {
            annotations: Annotations::named("pw"),
            data: b"x".to_vec(),
            ..Default::default()
        },
        ..Default::default()
    };
    s.update_local(|tx| tx.create(secret("s1"))).unwrap();
    assert!(matches!(
        s.update_local(|tx| tx.create(secret("s2"))),
        Err(Error::NameConflict { .. })
    ));
    let config = |id: &str| Config {
        id: Id::from(id),
        spec: ConfigSpec {
            annotations: Annotations::named("cfg"),
            ..Default::default()
        },
        ..Default::default()
    };
    s.update_local(|tx| tx.create(config("c1"))).unwrap();
    assert!(matches!(
        s.update_local(|tx| tx.create(config("c2"))),
        Err(Error::NameConflict { .. })
    ));
}

#[test]
fn resolve_by_id_name_and_unique_prefix() {
    let s = store();
    s.update_local(|tx| {
        tx.create(service("abc123", "web", "nginx", 1))?;
        tx.create(service("abd456", "db", "redis", 1))?;
        Ok(())
    })
    .unwrap();
    let v = s.view();
    assert_eq!(v.resolve::<Service>("abc123").unwrap().id, "abc123");
    assert_eq!(v.resolve::<Service>("db").unwrap().id, "abd456");
    assert_eq!(v.resolve::<Service>("abc").unwrap().id, "abc123");
    assert_eq!(v.find_by_id_prefix::<Service>("ab").count(), 2);
    let amb = v.resolve::<Service>("ab").unwrap_err();
    assert!(
        matches!(amb, Error::InvalidArgument(ref m) if m.contains("ambiguous")),
        "{amb}"
    );
    let missing = v.resolve::<Service>("zzz").unwrap_err();
    assert_eq!(
        missing,
        Error::NotFound {
            kind: Kind::Service,
            id: "zzz".into()
        }
    );
    assert_eq!(missing.to_string(), "service zzz not found");
    assert!(matches!(
        v.resolve::<Service>(""),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn stale_update_is_a_conflict_and_changes_nothing() {
    let s = store();
    seed(&s);
    let read = (*s.view().get::<Service>("svc-web").unwrap()).clone();
    let mut first = read.clone();
    first.spec.mode = ServiceMode::Replicated { replicas: 5 };
    s.update_local(|tx| tx.update(first)).unwrap();
    let mut second = read;
    second.spec.mode = ServiceMode::Replicated { replicas: 9 };
    let err = s.update_local(|tx| tx.update(second)).unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            kind: Kind::Service,
            id: Id::from("svc-web"),
            read: 1,
            current: 2
        }
    );
    assert_eq!(
        s.view().get::<Service>("svc-web").unwrap().spec.mode,
        ServiceMode::Replicated { replicas: 5 }
    );
}

#[test]
fn missing_objects_and_duplicate_ids_are_errors() {
    let s = store();
    seed(&s);
    let ghost = node("ghost", "g");
    assert_eq!(
        s.update_local(|tx| tx.update(ghost)).unwrap_err(),
        Error::NotFound {
            kind: Kind::Node,
            id: "ghost".into()
        }
    );
    assert_eq!(
        s.update_local(|tx| tx.delete::<Node>("ghost")).unwrap_err(),
        Error::NotFound {
            kind: Kind::Node,
            id: "ghost".into()
        }
    );
    assert_eq!(
        s.update_local(|tx| tx.create(node("node-a", "again")))
            .unwrap_err(),
        Error::AlreadyExists {
            kind: Kind::Node,
            id: Id::from("node-a")
        }
    );
}

#[test]
fn a_failing_transaction_changes_nothing() {
    let s = store();
    seed(&s);
    let before = s.snapshot();
    let index = s.index();
    let r: Result<()> = s.update_local(|tx| {
        tx.create(node("node-c", "gamma"))?;
        tx.delete::<Task>("task-1")?;
        tx.create(service("svc-2", "web", "x", 1))?; // name conflict
        Ok(())
    });
    assert!(r.is_err());
    assert_eq!(s.snapshot(), before);
    assert_eq!(s.index(), index);
}

#[test]
fn task_states_only_move_forward() {
    let s = store();
    seed(&s);
    let mut t = (*s.view().get::<Task>("task-1").unwrap()).clone();
    t.status.state = TaskState::Running;
    let t = (*s.update_local(|tx| tx.update(t)).unwrap()).clone();
    let mut back = t.clone();
    back.status.state = TaskState::Preparing;
    let err = s.update_local(|tx| tx.update(back)).unwrap_err();
    assert_eq!(
        err,
        Error::InvalidTransition {
            id: Id::from("task-1"),
            field: "status.state",
            from: TaskState::Running,
            to: TaskState::Preparing
        }
    );
    assert_eq!(
        err.to_string(),
        "task task-1: status.state cannot move back from running to preparing"
    );
    let mut shut = t.clone();
    shut.desired_state = TaskState::Shutdown;
    let shut = (*s.update_local(|tx| tx.update(shut)).unwrap()).clone();
    let mut revive = shut;
    revive.desired_state = TaskState::Running;
    assert!(matches!(
        s.update_local(|tx| tx.update(revive)),
        Err(Error::InvalidTransition {
            field: "desired_state",
            ..
        })
    ));
}

#[test]
fn reads_in_a_transaction_see_its_own_writes() {
    let s = store();
    s.update_local(|tx| {
        let svc = tx.create(service("", "web", "nginx", 1))?;
        assert_eq!(svc.id.len(), crate::ID_LEN, "an empty ID is generated");
        assert!(tx.get::<Service>(&svc.id).is_some());
        assert_eq!(tx.get_by_name::<Service>("web").unwrap().id, svc.id);
        let t = tx.create(task("t1", &svc, 1))?;
        assert_eq!(tx.tasks_by_service(&svc.id).count(), 1);
        tx.delete::<Task>(&t.id)?;
        assert_eq!(tx.tasks_by_service(&svc.id).count(), 0);
        Ok(())
    })
    .unwrap();
    assert_eq!(s.view().count::<Task>(), 0);
    assert_eq!(s.view().count::<Service>(), 1);
}

#[test]
fn batches_keep_every_write_and_replay_identically() {
    let s = store();
    seed(&s);
    let tables = s.view();
    let mut tx = Tx::new(&tables, Timestamp::ZERO);
    // Update twice: two actions, both carrying the version from before the tx.
    let mut n = (*tx.get::<Node>("node-a").unwrap()).clone();
    n.spec.availability = Availability::Drain;
    let n = (*tx.update(n).unwrap()).clone();
    let mut n2 = n;
    n2.spec.availability = Availability::Pause;
    tx.update(n2).unwrap();
    // A stale read inside the transaction is still caught.
    let stale = (*tables.get::<Node>("node-a").unwrap()).clone();
    assert!(matches!(tx.update(stale), Err(Error::Conflict { .. })));
    // Create then update, create then delete, update then delete.
    let c = (*tx.create(node("node-c", "gamma")).unwrap()).clone();
    tx.update(c).unwrap();
    tx.create(node("node-d", "delta")).unwrap();
    tx.delete::<Node>("node-d").unwrap();
    let t = (*tx.get::<Task>("task-3").unwrap()).clone();
    tx.update(t).unwrap();
    tx.delete::<Task>("task-3").unwrap();
    let actions: Vec<_> = tx.actions().cloned().collect();
    assert_eq!(actions.len(), 8, "{actions:#?}");
    for a in &actions[..2] {
        match a {
            StoreAction::Update(Object::Node(n)) => assert_eq!(n.meta.version.index, 1),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(&actions[3], StoreAction::Update(Object::Node(n)) if n.meta.version.index == 0)
    );
    let (local, _, local_changes) = tx.finish();
    // Replayed at another index through the state machine: the same state.
    let other = Store::new();
    other.restore(&s.snapshot()).unwrap();
    let mut w = other.watch(Filter::all());
    other.apply(7, &actions).unwrap();
    let replayed = other.view();
    assert_eq!(
        replayed.get::<Node>("node-a").unwrap().spec.availability,
        Availability::Pause
    );
    assert_eq!(
        replayed.get::<Node>("node-a").unwrap().meta.version.index,
        7
    );
    assert!(replayed.contains::<Node>("node-c") && !replayed.contains::<Node>("node-d"));
    assert!(!replayed.contains::<Task>("task-3"));
    assert_eq!(local.count::<Node>(), replayed.count::<Node>());
    assert_eq!(w.try_next().unwrap().changes.len(), local_changes.len());
}

#[test]
fn renames_that_swap_names_within_one_transaction_replay() {
    let s = store();
    seed(&s);
    let mut batch = Vec::new();
    s.update_local(|tx| {
        let rename = |tx: &mut Tx, id: &str, name: &str| {
            let mut svc = (*tx.get::<Service>(id).unwrap()).clone();
            svc.spec.annotations.name = name.into();
            tx.update(svc).map(drop)
        };
        rename(tx, "svc-web", "tmp")?;
        rename(tx, "svc-db", "web")?;
        rename(tx, "svc-web", "db")?;
        batch = tx.actions().cloned().collect();
        Ok(())
    })
    .unwrap();
    let other = Store::new();
    seed(&other);
    other.apply(2, &batch).unwrap();
    for store in [&s, &other] {
        let v = store.view();
        assert_eq!(v.resolve::<Service>("db").unwrap().id, "svc-web");
        assert_eq!(v.resolve::<Service>("web").unwrap().id, "svc-db");
        assert!(v.get_by_name::<Service>("tmp").is_none());
    }
}

#[test]
fn remove_then_recreate_in_one_transaction() {
    let s = store();
    seed(&s);
    s.update_local(|tx| {
        tx.delete::<Node>("node-a")?;
        tx.create(node("node-a", "reborn"))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(s.view().get::<Node>("node-a").unwrap().name(), "reborn");
    assert_eq!(s.view().find_by_name::<Node>("alpha").count(), 0);
}

#[test]
fn timestamps_come_from_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(Timestamp {
        seconds: 100,
        nanos: 0,
    }));
    let s = Store::with_clock(clock.clone());
    let n = s.update_local(|tx| tx.create(node("n", "h"))).unwrap();
    assert_eq!(n.meta.created_at.seconds, 100);
    clock.advance(Duration::from_secs(5));
    let mut m = (*n).clone();
    m.spec.availability = Availability::Pause;
    m.meta.created_at = Timestamp::ZERO; // ignored: creation time is kept
    let m = s.update_local(|tx| tx.update(m)).unwrap();
    assert_eq!(m.meta.created_at.seconds, 100);
    assert_eq!(m.meta.updated_at.seconds, 105);
}

#[test]
fn watchers_get_changes_after_commit_in_order_with_versions() {
    let s = store();
    let mut all = s.watch(Filter::all());
    let mut tasks = s.watch(Filter::kinds([Kind::Task]).actions([Action::Update]));
    seed(&s);
    let e = all.try_next().unwrap();
    assert_eq!(e.version, 1);
    assert_eq!(e.changes.len(), 7);
    assert!(e.changes.iter().all(|c| c.action == Action::Create));
    assert!(tasks.try_next().is_none(), "creates filtered out");
    let mut t = (*s.view().get::<Task>("task-1").unwrap()).clone();
    t.status.state = TaskState::Assigned;
    s.update_local(|tx| tx.update(t)).unwrap();
    let e = tasks.try_next().unwrap();
    assert_eq!(e.version, 2);
    let c = &e.changes[0];
    assert_eq!(c.action, Action::Update);
    assert_eq!(
        c.object.downcast::<Task>().unwrap().status.state,
        TaskState::Assigned
    );
    assert_eq!(
        c.old
            .as_ref()
            .unwrap()
            .downcast::<Task>()
            .unwrap()
            .status
            .state,
        TaskState::New
    );
    assert_eq!(all.drain().len(), 1);
    s.update_local(|tx| tx.delete::<Node>("node-b")).unwrap();
    let e = all.try_next().unwrap();
    assert_eq!((e.version, e.changes[0].action), (3, Action::Remove));
    assert_eq!(e.changes[0].object.id(), "node-b");
}

#[test]
fn predicate_filters_and_dropped_watchers_are_forgotten() {
    let s = store();
    let mut web = s.watch(Filter::kinds([Kind::Task]).matching(|c| {
        c.object
            .downcast::<Task>()
            .is_some_and(|t| t.service_id == "svc-web")
    }));
    let dropped = s.watch(Filter::all());
    drop(dropped);
    seed(&s);
    let e = web.try_next().unwrap();
    assert_eq!(e.changes.len(), 2);
    assert_eq!(s.watcher_count(), 1);
}

#[test]
fn view_and_watch_misses_nothing() {
    let s = store();
    seed(&s);
    let (view, mut w) = s.view_and_watch(Filter::all());
    assert_eq!(view.index(), 1);
    assert!(w.try_next().is_none());
    s.update_local(|tx| tx.delete::<Task>("task-2")).unwrap();
    assert_eq!(w.try_next().unwrap().version, 2);
    assert_eq!(view.count::<Task>(), 3, "a view never changes");
}

#[test]
fn apply_is_all_or_nothing_and_skips_replays() {
    let s = store();
    let svc = Arc::new(service("s1", "web", "nginx", 1));
    s.apply(5, &[StoreAction::Create(Object::Service(svc.clone()))])
        .unwrap();
    assert_eq!(s.index(), 5);
    assert_eq!(s.view().get::<Service>("s1").unwrap().meta.version.index, 5);
    // Replay of an applied index: skipped.
    s.apply(
        5,
        &[StoreAction::Remove {
            kind: Kind::Service,
            id: Id::from("s1"),
        }],
    )
    .unwrap();
    assert!(s.view().contains::<Service>("s1"));
    // A failing batch changes nothing but consumes its index.
    let err = s
        .apply(
            6,
            &[
                StoreAction::Create(Object::Node(Arc::new(node("n1", "h")))),
                StoreAction::Create(Object::Service(svc)),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }));
    assert_eq!(s.index(), 6);
    assert!(!s.view().contains::<Node>("n1"));
}

#[test]
fn a_change_to_an_object_removed_since_it_was_read_is_a_conflict() {
    let s = store();
    let svc = Arc::new(service("s1", "web", "nginx", 1));
    s.apply(1, &[StoreAction::Create(Object::Service(svc))])
        .unwrap();
    let read = s.view().get::<Service>("s1").unwrap();
    s.apply(
        2,
        &[StoreAction::Remove {
            kind: Kind::Service,
            id: Id::from("s1"),
        }],
    )
    .unwrap();
    // Written from what was read at version 1, applied after the removal:
    // a concurrent change (retry), not a caller's mistake.
    let err = s
        .apply(3, &[StoreAction::Update(Object::Service(read))])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                read: 1,
                current: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // A removal applied after another one: the same.
    let remove = StoreAction::Remove {
        kind: Kind::Service,
        id: Id::from("s1"),
    };
    let err = s.apply(4, &[remove]).unwrap_err();
    assert!(matches!(err, Error::Conflict { current: 0, .. }), "{err:?}");
}

#[test]
fn snapshot_restore_roundtrip_and_diff_events() {
    let s = store();
    seed(&s);
    let bytes = s.snapshot();
    let t = Store::new();
    t.update_local(|tx| tx.create(node("stray", "x"))).unwrap();
    let mut w = t.watch(Filter::all());
    t.restore(&bytes).unwrap();
    assert_eq!(t.snapshot(), bytes);
    assert_eq!(t.index(), 1);
    let e = w.try_next().unwrap();
    assert_eq!(
        e.changes
            .iter()
            .filter(|c| c.action == Action::Remove)
            .count(),
        1
    );
    assert_eq!(
        e.changes
            .iter()
            .filter(|c| c.action == Action::Create)
            .count(),
        7
    );
    // Indexes are rebuilt.
    assert_eq!(t.view().tasks_by_service("svc-web").count(), 2);
    assert_eq!(t.view().resolve::<Service>("db").unwrap().id, "svc-db");
}

#[test]
fn malformed_snapshot_and_batch_bytes_are_errors() {
    let s = store();
    seed(&s);
    let before = s.snapshot();
    for bad in [
        &b""[..],
        &b"\xff\xff\xff\xff"[..],
        &before[..before.len() / 2],
    ] {
        assert!(matches!(
            s.restore(bad),
            Err(Error::Codec {
                what: "snapshot",
                ..
            })
        ));
    }
    assert_eq!(s.snapshot(), before);
    assert!(matches!(
        decode_batch(b"\x05\x09"),
        Err(Error::Codec { what: "batch", .. })
    ));
    let batch = vec![StoreAction::Remove {
        kind: Kind::Node,
        id: Id::from("x"),
    }];
    assert_eq!(decode_batch(&encode_batch(&batch)).unwrap(), batch);
}

#[test]
fn cluster_object_is_found_by_its_default_name() {
    let s = store();
    assert!(s.view().cluster().is_none());
    s.update_local(|tx| {
        tx.create(Cluster {
            id: Id::from("cl"),
            spec: ClusterSpec {
                annotations: Annotations::named(DEFAULT_CLUSTER_NAME),
                ..Default::default()
            },
            ..Default::default()
        })
    })
    .unwrap();
    let c = s.view().cluster().unwrap();
    assert_eq!(c.spec.raft.election_tick, 10);
    assert_eq!(c.spec.orchestration.task_history_retention_limit, 5);
    assert_eq!(c.spec.dispatcher.heartbeat_period, Duration::from_secs(5));
    assert_eq!(
        c.spec.ca_config.node_cert_expiry,
        Duration::from_secs(2160 * 3600)
    );
}

#[test]
fn update_local_refuses_a_replicated_store() {
    struct Never;
    #[async_trait::async_trait]
    impl Proposer for Never {
        async fn propose(&self, _: Vec<StoreAction>) -> Result<u64> {
            Err(Error::NotLeader {
                leader: Some("m2".into()),
            })
        }
    }
    let s = store();
    s.set_proposer(Arc::new(Never));
    assert!(matches!(
        s.update_local(|tx| tx.create(node("n", "h"))),
        Err(Error::InvalidArgument(_))
    ));
    let err = futures::executor::block_on(s.update(|tx| tx.create(node("n", "h")))).unwrap_err();
    assert_eq!(err.to_string(), "not the leader (the leader is m2)");
    assert!(err.is_retryable());
    assert_eq!(s.view().count::<Node>(), 0);
    s.clear_proposer();
    assert!(s.update_local(|tx| tx.create(node("n", "h"))).is_ok());
}

#[test]
fn objects_roundtrip_through_json_with_docker_style_enums() {
    let mut svc = service("s", "web", "nginx:1", 3);
    svc.spec.endpoint = Some(EndpointSpec {
        mode: ResolutionMode::Vip,
        ports: vec![PortConfig {
            target_port: 80,
            published_port: 8080,
            ..Default::default()
        }],
    });
    svc.spec.update = Some(UpdateConfig {
        order: UpdateOrder::StartFirst,
        ..Default::default()
    });
    let json = serde_json::to_string(&svc).unwrap();
    assert!(
        json.contains("\"tcp\"")
            && json.contains("\"ingress\"")
            && json.contains("\"start-first\""),
        "{json}"
    );
    let back: Service = serde_json::from_str(&json).unwrap();
    assert_eq!(back, svc);
    let state: TaskState = "Running".parse().unwrap();
    assert_eq!(state, TaskState::Running);
    assert!("bogus".parse::<TaskState>().is_err());
    assert!(TaskState::Complete.is_terminal() && !TaskState::Running.is_terminal());
}

/// Applies `f` to the current copy of `id` and writes it.
fn rewrite<T: StoreObject>(s: &Store, id: &str, f: impl Fn(&mut T)) -> Arc<T> {
    s.update_local(|tx| {
        let mut o = (*tx.get::<T>(id).expect("the object")).clone();
        f(&mut o);
        tx.update(o)
    })
    .unwrap()
}

#[test]
fn spec_reads_survive_status_writes_but_not_spec_changes() {
    let s = store();
    seed(&s);
    s.update_local(|tx| {
        tx.create(Cluster {
            id: Id::from("cl"),
            spec: ClusterSpec {
                annotations: Annotations::named(DEFAULT_CLUSTER_NAME),
                ..Default::default()
            },
            ..Default::default()
        })
    })
    .unwrap();

    // A service: created, read, then the swarm writes its status and endpoint.
    let read = s.view().get::<Service>("svc-web").unwrap();
    assert_eq!(
        read.spec_index, read.meta.version.index,
        "stamped at creation"
    );
    let at = read.meta.version.index;
    let after = rewrite::<Service>(&s, "svc-web", |svc| {
        svc.update_status = Some(UpdateStatus {
            state: UpdateState::Completed,
            ..Default::default()
        });
        svc.endpoint = Some(Endpoint::default());
    });
    assert!(after.meta.version.index > at);
    assert_eq!(after.spec_index, at, "status writes keep the spec index");
    after.check_spec_read(at).unwrap();
    // A read from the future is refused.
    assert!(after.check_spec_read(after.meta.version.index + 1).is_err());
    // A spec change since the read: out of sequence.
    let changed = rewrite::<Service>(&s, "svc-web", |svc| {
        svc.spec.mode = ServiceMode::Replicated { replicas: 9 }
    });
    assert_eq!(changed.spec_index, changed.meta.version.index);
    let err = changed.check_spec_read(at).unwrap_err();
    assert!(err.to_string().contains("update out of sequence"), "{err}");
    changed.check_spec_read(changed.spec_index).unwrap();
    // A removal request counts as a change of what the user asked for.
    let deleting = rewrite::<Service>(&s, "svc-web", |svc| svc.pending_delete = true);
    assert!(deleting.check_spec_read(changed.spec_index).is_err());

    // The cluster: token rotations and keys are not its settings.
    let c = s.view().cluster().unwrap();
    let at = c.meta.version.index;
    let rotated = rewrite::<Cluster>(&s, "cl", |c| {
        c.root_ca.join_tokens.worker = "SWMTKN-1-new".into();
        c.encryption_key_lamport_clock += 1;
    });
    rotated.check_spec_read(at).unwrap();
    let set = rewrite::<Cluster>(&s, "cl", |c| c.spec.raft.snapshot_interval += 1);
    assert!(set.check_spec_read(at).is_err());
    set.check_spec_read(set.meta.version.index).unwrap();

    // Nodes already worked this way; a task tracks no spec: only its current
    // version will do.
    let n = rewrite::<Node>(&s, "node-a", |n| n.status.message = "up".into());
    n.check_spec_read(n.spec_version).unwrap();
    let t = s.view().get::<Task>("task-1").unwrap();
    t.check_spec_read(t.meta.version.index).unwrap();
    assert!(t.check_spec_read(t.meta.version.index - 1).is_err());
}
