use std::time::Duration;

use futures::executor::block_on;
use swarm_core::types::*;
use swarm_core::{Id, Store};

use super::*;
use crate::pki::RootCa;

fn control() -> (Control, RootCa) {
    let c = Control::new(Store::new());
    let ca = RootCa::generate().unwrap();
    block_on(c.init_cluster(ClusterSpec::default(), &ca)).unwrap();
    (c, ca)
}

fn spec(name: &str, image: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named(name),
        task: TaskSpec {
            container: ContainerSpec {
                image: image.into(),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas },
        ..Default::default()
    }
}

fn add_node(c: &Control, id: &str, role: NodeRole, state: NodeState) {
    c.store()
        .update_local(|tx| {
            tx.create(Node {
                id: Id::from(id),
                spec: NodeSpec {
                    desired_role: role,
                    ..Default::default()
                },
                role,
                description: Some(NodeDescription {
                    hostname: format!("host-{id}"),
                    ..Default::default()
                }),
                status: NodeStatus {
                    state,
                    ..Default::default()
                },
                ..Default::default()
            })
            .map(drop)
        })
        .unwrap();
}

fn invalid(r: crate::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn init_creates_the_cluster_with_defaults_and_tokens() {
    let (c, ca) = control();
    let cluster = c.cluster().unwrap();
    assert_eq!(cluster.id.len(), swarm_core::ID_LEN);
    assert_eq!(cluster.spec.raft.snapshot_interval, 10_000);
    assert_eq!(
        cluster.spec.dispatcher.heartbeat_period,
        Duration::from_secs(5)
    );
    let tokens = c.join_tokens().unwrap();
    assert_ne!(tokens.worker, tokens.manager);
    crate::pki::JoinToken::parse(&tokens.worker)
        .unwrap()
        .check_ca(ca.cert_der())
        .unwrap();
    assert!(matches!(
        block_on(c.init_cluster(ClusterSpec::default(), &ca)),
        Err(Error::FailedPrecondition(_))
    ));
    let fresh = Control::new(Store::new());
    let err = fresh.cluster().unwrap_err();
    assert!(err.to_string().contains("not a swarm manager"), "{err}");
}

#[test]
fn rotating_a_token_refuses_the_old_one() {
    let (c, ca) = control();
    let before = c.join_tokens().unwrap();
    let after = block_on(c.rotate_join_tokens(
        Rotate {
            worker: true,
            manager: false,
        },
        &ca,
    ))
    .unwrap();
    assert_ne!(before.worker, after.worker);
    assert_eq!(before.manager, after.manager);
    let old = crate::pki::JoinToken::parse(&before.worker).unwrap();
    assert!(old.role_in(&after.worker, &after.manager).is_err());
}

#[test]
fn cluster_update_is_validated_and_versioned() {
    let (c, _) = control();
    let cl = c.cluster().unwrap();
    let mut spec = cl.spec.clone();
    spec.raft.election_tick = 1;
    assert!(
        invalid(block_on(
            c.update_cluster(cl.meta.version.index, spec.clone())
        ))
        .contains("ElectionTick")
    );
    spec.raft.election_tick = 20;
    spec.orchestration.task_history_retention_limit = 10;
    let updated = block_on(c.update_cluster(cl.meta.version.index, spec.clone())).unwrap();
    assert_eq!(updated.spec.orchestration.task_history_retention_limit, 10);
    assert_eq!(updated.spec.annotations.name, DEFAULT_CLUSTER_NAME);
    assert!(matches!(
        block_on(c.update_cluster(cl.meta.version.index, spec)),
        Err(Error::Conflict(_))
    ));
}

#[test]
fn service_create_validates_every_field() {
    let (c, _) = control();
    let mut s = spec("web", "nginx:1.25", 3);
    assert!(
        invalid(block_on(c.create_service(spec("", "nginx", 1)))).contains("name must be provided")
    );
    assert!(invalid(block_on(c.create_service(spec("bad name!", "nginx", 1)))).contains("invalid"));
    assert!(
        invalid(block_on(c.create_service(spec("web", "", 1))))
            .contains("image reference must be provided")
    );
    s.task.placement = Some(Placement {
        constraints: vec!["node.role>>manager".into()],
        ..Default::default()
    });
    assert!(invalid(block_on(c.create_service(s.clone()))).contains("node.role>>manager"));
    s.task.placement = None;
    s.task.container.mounts = vec![Mount {
        target: "relative".into(),
        ..Default::default()
    }];
    assert!(invalid(block_on(c.create_service(s.clone()))).contains("absolute"));
    s.task.container.mounts.clear();
    s.task.resources = Some(ResourceRequirements {
        reservations: Some(Resources {
            nano_cpus: -1,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(invalid(block_on(c.create_service(s.clone()))).contains("NanoCPUs"));
    s.task.resources = None;
    s.task.networks = vec![NetworkAttachmentConfig {
        target: "nonet".into(),
        ..Default::default()
    }];
    assert!(invalid(block_on(c.create_service(s.clone()))).contains("network nonet not found"));
    s.task.networks.clear();
    s.endpoint = Some(EndpointSpec {
        mode: ResolutionMode::Vip,
        ports: vec![
            PortConfig {
                target_port: 80,
                published_port: 8080,
                ..Default::default()
            },
            PortConfig {
                target_port: 81,
                published_port: 8080,
                ..Default::default()
            },
        ],
    });
    assert!(invalid(block_on(c.create_service(s.clone()))).contains("duplicate published ports"));
    s.endpoint = Some(EndpointSpec {
        mode: ResolutionMode::Dnsrr,
        ports: vec![PortConfig {
            target_port: 80,
            published_port: 8080,
            ..Default::default()
        }],
    });
    assert!(invalid(block_on(c.create_service(s.clone()))).contains("dnsrr"));
    s.endpoint = None;
    s.update = Some(UpdateConfig {
        max_failure_ratio: 1.5,
        ..Default::default()
    });
    assert!(invalid(block_on(c.create_service(s.clone()))).contains("MaxFailureRatio"));
    assert!(
        c.list_services(&ServiceFilter::default()).is_empty(),
        "nothing was written"
    );
    s.update = None;
    block_on(c.create_service(s.clone())).unwrap();
    assert!(matches!(
        block_on(c.create_service(s)),
        Err(Error::NameConflict(_))
    ));
}

#[test]
fn service_lifecycle_create_update_scale_remove() {
    let (c, _) = control();
    let svc = block_on(c.create_service(spec("redis", "redis:3.0.6", 3))).unwrap();
    assert_eq!(c.inspect_service("redis").unwrap().id, svc.id);
    assert_eq!(c.inspect_service(&svc.id[..5]).unwrap().id, svc.id);
    let mut new = svc.spec.clone();
    new.task.container.image = "redis:3.0.7".into();
    let updated = block_on(c.update_service("redis", svc.meta.version.index, new.clone())).unwrap();
    assert_eq!(
        updated.previous_spec.as_ref().unwrap().task.container.image,
        "redis:3.0.6"
    );
    assert_eq!(updated.spec_version.unwrap().index, 2);
    // A stale version is refused.
    assert!(matches!(
        block_on(c.update_service("redis", svc.meta.version.index, new.clone())),
        Err(Error::Conflict(_))
    ));
    // Mode kind cannot change.
    let mut global = new.clone();
    global.mode = ServiceMode::Global;
    assert!(
        invalid(block_on(c.update_service(
            "redis",
            updated.meta.version.index,
            global
        )))
        .contains("mode")
    );
    let scaled = block_on(c.scale_service("redis", 5)).unwrap();
    assert_eq!(scaled.spec.mode, ServiceMode::Replicated { replicas: 5 });
    // Tasks are planned by the orchestrator; removing marks them for removal.
    let plan = crate::manager::orchestrator::reconcile(
        &c.store().view(),
        &scaled,
        swarm_core::Timestamp::now(),
    );
    c.store().update_local(|tx| plan.apply(tx)).unwrap();
    assert_eq!(
        c.list_tasks(&TaskFilter {
            services: vec!["redis".into()],
            ..Default::default()
        })
        .unwrap()
        .len(),
        5
    );
    block_on(c.remove_service("redis")).unwrap();
    assert!(matches!(
        c.inspect_service("redis"),
        Err(Error::NotFound { .. })
    ));
    let left: Vec<_> = c.store().view().tasks_by_service(&svc.id).collect();
    assert!(
        left.iter().all(|t| t.desired_state == TaskState::Remove),
        "tasks of a removed service are shut down"
    );
    assert!(matches!(
        block_on(c.remove_service("redis")),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn global_services_cannot_be_scaled() {
    let (c, _) = control();
    let mut s = spec("agent", "busybox", 1);
    s.mode = ServiceMode::Global;
    block_on(c.create_service(s)).unwrap();
    assert!(invalid(block_on(c.scale_service("agent", 3))).contains("replicated mode"));
    assert_eq!(
        c.list_services(&ServiceFilter {
            global: Some(true),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        c.list_services(&ServiceFilter {
            global: Some(false),
            ..Default::default()
        })
        .len(),
        0
    );
}

#[test]
fn task_listing_filters_by_service_node_and_desired_state() {
    let (c, _) = control();
    add_node(&c, "n1", NodeRole::Worker, NodeState::Ready);
    let svc = block_on(c.create_service(spec("web", "nginx", 2))).unwrap();
    let plan = crate::manager::orchestrator::reconcile(
        &c.store().view(),
        &svc,
        swarm_core::Timestamp::now(),
    );
    c.store().update_local(|tx| plan.apply(tx)).unwrap();
    let first = c.list_tasks(&TaskFilter::default()).unwrap()[0].clone();
    assert_eq!(first.slot, 1);
    c.store()
        .update_local(|tx| {
            let mut t = (*tx.get::<Task>(&first.id).unwrap()).clone();
            t.node_id = Id::from("n1");
            tx.update(t).map(drop)
        })
        .unwrap();
    let on_n1 = c
        .list_tasks(&TaskFilter {
            nodes: vec!["host-n1".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(on_n1.len(), 1);
    let shut = c
        .list_tasks(&TaskFilter {
            desired_states: vec![TaskState::Shutdown],
            ..Default::default()
        })
        .unwrap();
    assert!(shut.is_empty());
    assert!(matches!(
        c.list_tasks(&TaskFilter {
            services: vec!["nope".into()],
            ..Default::default()
        }),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(c.inspect_task(&first.id[..8]).unwrap().id, first.id);
}

#[test]
fn node_update_and_removal_rules() {
    let (c, _) = control();
    add_node(&c, "m1", NodeRole::Manager, NodeState::Ready);
    add_node(&c, "w1", NodeRole::Worker, NodeState::Ready);
    let m1 = c.inspect_node("host-m1").unwrap();
    let mut demote = m1.spec.clone();
    demote.desired_role = NodeRole::Worker;
    let err = block_on(c.update_node("m1", m1.meta.version.index, demote)).unwrap_err();
    assert!(
        matches!(&err, Error::FailedPrecondition(m) if m.contains("last manager")),
        "{err}"
    );
    let w1 = c.inspect_node("w1").unwrap();
    let mut drain = w1.spec.clone();
    drain.availability = Availability::Drain;
    drain.annotations.labels.insert("zone".into(), "a".into());
    block_on(c.update_node("w1", w1.meta.version.index, drain)).unwrap();
    // The swarm writes the node's status after the caller read it: the spec
    // update still applies (docker's CLI would get "update out of sequence").
    let read = c.inspect_node("w1").unwrap();
    block_on(c.store().update(|tx| {
        let mut n = (*tx.get::<Node>("w1").unwrap()).clone();
        n.status.message = "heartbeat".into();
        tx.update(n).map(drop)
    }))
    .unwrap();
    let mut pause = read.spec.clone();
    pause.availability = Availability::Pause;
    block_on(c.update_node("w1", read.meta.version.index, pause.clone())).unwrap();
    let now = c.inspect_node("w1").unwrap();
    assert_eq!(now.spec.availability, Availability::Pause);
    assert_eq!(now.status.message, "heartbeat", "the status write is kept");
    // A spec change since the read is a conflict: nothing is lost.
    let mut active = read.spec.clone();
    active.availability = Availability::Active;
    let err = block_on(c.update_node("w1", read.meta.version.index, active)).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(
        c.inspect_node("w1").unwrap().spec.availability,
        Availability::Pause
    );
    let filtered = c.list_nodes(&NodeFilter {
        labels: vec!["zone=a".into()],
        ..Default::default()
    });
    assert_eq!(filtered.len(), 1);
    assert_eq!(
        c.list_nodes(&NodeFilter {
            role: Some(NodeRole::Manager),
            ..Default::default()
        })
        .len(),
        1
    );
    // Removal: managers never, live nodes only with force.
    assert!(
        matches!(block_on(c.remove_node("m1", true)), Err(Error::FailedPrecondition(m)) if m.contains("demoted"))
    );
    assert!(
        matches!(block_on(c.remove_node("w1", false)), Err(Error::FailedPrecondition(m)) if m.contains("not down"))
    );
    block_on(c.remove_node("w1", true)).unwrap();
    assert!(matches!(c.inspect_node("w1"), Err(Error::NotFound { .. })));
    assert_eq!(
        c.cluster().unwrap().blacklisted_certificates[0].node_id,
        "w1"
    );
    assert!(matches!(
        block_on(c.remove_node("ghost", true)),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn updates_read_before_the_swarms_own_writes_still_apply() {
    let (c, ca) = control();
    // A service read by a user; then the swarm writes its endpoint allocation
    // and update status (no spec change).
    let svc = block_on(c.create_service(spec("web", "nginx:1", 2))).unwrap();
    let read = svc.meta.version.index;
    block_on(c.store().update(|tx| {
        let mut s = (*tx.get::<Service>(&svc.id).unwrap()).clone();
        s.endpoint = Some(Endpoint {
            virtual_ips: vec![VirtualIp {
                network_id: Id::from("ingress"),
                addr: "10.0.0.2/24".into(),
            }],
            ..Default::default()
        });
        s.update_status = Some(UpdateStatus {
            state: UpdateState::Completed,
            ..Default::default()
        });
        tx.update(s)
    }))
    .unwrap();
    let mut new = svc.spec.clone();
    new.task.container.image = "nginx:2".into();
    let updated = block_on(c.update_service("web", read, new.clone())).unwrap();
    assert_eq!(updated.spec.task.container.image, "nginx:2");
    assert!(updated.endpoint.is_some(), "the allocation is kept");
    assert!(updated.update_status.is_none(), "a new update starts over");
    // The spec changed since that read: out of sequence, nothing changed.
    new.task.container.image = "nginx:3".into();
    let err = block_on(c.update_service("web", read, new.clone())).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("update out of sequence"), "{err}");
    assert_eq!(
        c.inspect_service("web").unwrap().spec.task.container.image,
        "nginx:2"
    );
    // A version that never was is refused too.
    let future = updated.meta.version.index + 100;
    assert!(matches!(
        block_on(c.update_service("web", future, new)),
        Err(Error::Conflict(_))
    ));

    // The cluster: settings read, then the join tokens rotate.
    let cl = c.cluster().unwrap();
    block_on(c.rotate_join_tokens(
        Rotate {
            worker: true,
            manager: false,
        },
        &ca,
    ))
    .unwrap();
    assert!(c.cluster().unwrap().meta.version.index > cl.meta.version.index);
    let mut settings = cl.spec.clone();
    settings.orchestration.task_history_retention_limit = 3;
    let set = block_on(c.update_cluster(cl.meta.version.index, settings.clone())).unwrap();
    assert_eq!(set.spec.orchestration.task_history_retention_limit, 3);
    assert_ne!(
        set.root_ca.join_tokens.worker, cl.root_ca.join_tokens.worker,
        "the rotated token is kept"
    );
    // Unchanged settings from a read after the change: nothing to write.
    let same = block_on(c.update_cluster(set.meta.version.index, settings.clone())).unwrap();
    assert_eq!(same.meta.version.index, set.meta.version.index);
    // From the read before the change: out of sequence.
    settings.orchestration.task_history_retention_limit = 7;
    assert!(matches!(
        block_on(c.update_cluster(cl.meta.version.index, settings)),
        Err(Error::Conflict(_))
    ));
}
