//! A tour of Swarm's replicated state machine, the store every manager holds:
//! the cluster object, nodes, a service and its tasks, a watch that follows them,
//! optimistic concurrency, docker-style lookups, and snapshot/restore as raft uses
//! it. Run with `cargo run --release --example store_demo`.

use std::time::Instant;

use anyhow::Result;
use futures::executor::block_on;
use swarm::core::types::*;
use swarm::core::{Error, Filter, Kind, Store};

fn main() -> Result<()> {
    block_on(run())
}

async fn run() -> Result<()> {
    let store = Store::new();
    let mut task_events = store.watch(Filter::kinds([Kind::Task]));

    // `docker swarm init`: the cluster object, with SwarmKit's defaults.
    let cluster = store
        .update(|tx| {
            tx.create(Cluster {
                spec: ClusterSpec {
                    annotations: Annotations::named(DEFAULT_CLUSTER_NAME),
                    ..Default::default()
                },
                ..Default::default()
            })
        })
        .await?;
    println!("Swarm initialized: cluster {}", cluster.id);
    let spec = &cluster.spec;
    println!(
        " Task History Retention Limit: {}\n Raft: Snapshot Interval: {}, Number of Old Snapshots to Retain: {}, Heartbeat Tick: {}, Election Tick: {}\n Dispatcher: Heartbeat Period: {:?}\n CA Configuration: Expiry Duration: {}h",
        spec.orchestration.task_history_retention_limit,
        spec.raft.snapshot_interval,
        spec.raft.keep_old_snapshots,
        spec.raft.heartbeat_tick,
        spec.raft.election_tick,
        spec.dispatcher.heartbeat_period,
        spec.ca_config.node_cert_expiry.as_secs() / 3600,
    );

    // Three nodes join.
    let nodes = store
        .update(|tx| {
            ["manager1", "worker1", "worker2"]
                .iter()
                .enumerate()
                .map(|(i, host)| {
                    let role = if i == 0 {
                        NodeRole::Manager
                    } else {
                        NodeRole::Worker
                    };
                    tx.create(Node {
                        spec: NodeSpec {
                            desired_role: role,
                            ..Default::default()
                        },
                        role,
                        description: Some(NodeDescription {
                            hostname: host.to_string(),
                            ..Default::default()
                        }),
                        status: NodeStatus {
                            state: NodeState::Ready,
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                })
                .collect::<Result<Vec<_>, Error>>()
        })
        .await?;

    // `docker service create --replicas 5 --name helloworld alpine ping docker.com`:
    // the service and one NEW task per slot, in one transaction.
    let service = store
        .update(|tx| {
            let svc = tx.create(Service {
                spec: ServiceSpec {
                    annotations: Annotations::named("helloworld"),
                    task: TaskSpec {
                        container: ContainerSpec {
                            image: "alpine".into(),
                            args: vec!["ping".into(), "docker.com".into()],
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    mode: ServiceMode::Replicated { replicas: 5 },
                    ..Default::default()
                },
                ..Default::default()
            })?;
            for slot in 1..=5 {
                tx.create(Task {
                    service_id: svc.id.clone(),
                    slot,
                    spec: svc.spec.task.clone(),
                    annotations: Annotations::named(format!("helloworld.{slot}")),
                    desired_state: TaskState::Running,
                    ..Default::default()
                })?;
            }
            Ok(svc)
        })
        .await?;
    let event = task_events.try_next().expect("the create was watched");
    println!(
        "\nwatch: {} task changes committed at version {}",
        event.changes.len(),
        event.version
    );

    // Assign the tasks over the nodes and mark them running, as the scheduler and
    // the agents would, each write carrying the version it read.
    let view = store.view();
    let mut tasks: Vec<_> = view.tasks_by_service(&service.id).collect();
    tasks.sort_by_key(|t| t.slot);
    store
        .update(|tx| {
            for (i, t) in tasks.iter().enumerate() {
                let mut t = (**t).clone();
                t.node_id = nodes[i % nodes.len()].id.clone();
                t.status.state = TaskState::Running;
                t.status.message = "started".into();
                tx.update(t)?;
            }
            Ok(())
        })
        .await?;

    // A writer that read an old version loses, and nothing changes.
    let stale = (*tasks[0]).clone();
    match store.update(|tx| tx.update(stale)).await {
        Err(e @ Error::Conflict { .. }) => println!("stale write refused: {e}"),
        other => anyhow::bail!("expected a conflict, got {other:?}"),
    }
    // States only move forward.
    let mut back = (*store.view().get::<Task>(&tasks[0].id).unwrap()).clone();
    back.status.state = TaskState::Pending;
    if let Err(e) = store.update(|tx| tx.update(back)).await {
        println!("backward move refused: {e}");
    }

    // `docker service ps helloworld`, resolving the service by name.
    let view = store.view();
    let svc = view.resolve::<Service>("helloworld")?;
    println!(
        "\n{:<27} {:<14} {:<10} {:<15} {:<14}",
        "ID", "NAME", "IMAGE", "NODE", "DESIRED STATE"
    );
    let mut tasks: Vec<_> = view.tasks_by_service(&svc.id).collect();
    tasks.sort_by_key(|t| t.slot);
    for t in &tasks {
        let node = view
            .get::<Node>(&t.node_id)
            .map(|n| n.name().to_string())
            .unwrap_or_default();
        println!(
            "{:<27} {:<14} {:<10} {:<15} {:<14}",
            &t.id.as_str()[..12],
            t.annotations.name,
            t.spec.container.image,
            node,
            t.desired_state.as_str()
        );
    }
    // A unique ID prefix works as docker users expect.
    let prefix = &tasks[0].id.as_str()[..6];
    println!(
        "task {prefix}… resolves to {}",
        view.resolve::<Task>(prefix)?.annotations.name
    );

    // Snapshot and restore, as raft does for a member that is far behind.
    let started = Instant::now();
    let bytes = store.snapshot();
    let follower = Store::new();
    follower.restore(&bytes)?;
    println!(
        "\nsnapshot of {} bytes at index {} restored in {:?}: equal state = {}",
        bytes.len(),
        store.index(),
        started.elapsed(),
        follower.snapshot() == bytes
    );
    let missing = follower.view().resolve::<Service>("nope").unwrap_err();
    println!("lookup of an unknown service: {missing}");
    Ok(())
}
