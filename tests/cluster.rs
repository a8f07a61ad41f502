//! A whole swarm in one process over real sockets: one manager and two workers,
//! each with its own data directory and process runtime.

use std::sync::Arc;
use std::time::Duration;

use swarm::TaskFilter;
use swarm::core::types::*;
use swarm::runtime::Runtime;
use swarm::testing::{
    Cluster, Patience, eventually, process_runtime as runtime, sleep_spec as spec, wanted_running,
};
use swarm::{Worker, WorkerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_and_a_service_runs_scales_and_goes() {
    let c = Cluster::builder().workers(2).start().await;
    let control = c.control();
    c.until_ready().await;

    let info = c.manager().info().unwrap();
    assert_eq!((info.managers, info.nodes), (1, 3));
    assert_eq!(
        info.remote_managers,
        vec![(
            c.manager().node_id().clone(),
            c.manager().addr().to_string()
        )]
    );
    assert_eq!(info.spec.orchestration.task_history_retention_limit, 5);
    assert_eq!(info.spec.raft.snapshot_interval, 10_000);
    assert_eq!(
        (info.spec.raft.heartbeat_tick, info.spec.raft.election_tick),
        (1, 10)
    );
    assert_eq!(
        info.spec.dispatcher.heartbeat_period,
        Duration::from_secs(5)
    );
    assert_eq!(
        info.spec.ca_config.node_cert_expiry,
        Duration::from_secs(2160 * 3600)
    );
    assert_eq!(
        (
            info.default_address_pool.clone(),
            info.subnet_size,
            info.data_path_port
        ),
        (vec!["10.0.0.0/8".to_string()], 24, 4789)
    );

    control.create_service(spec("web", 3)).await.unwrap();
    eventually("3 running tasks", || {
        wanted_running(&control, "web").len() == 3
    })
    .await;
    let mut nodes: Vec<_> = wanted_running(&control, "web")
        .iter()
        .map(|t| t.node_id.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one per node");

    control.scale_service("web", 5).await.unwrap();
    eventually("5 running tasks", || {
        wanted_running(&control, "web").len() == 5
    })
    .await;
    control.scale_service("web", 2).await.unwrap();
    eventually("2 running tasks", || {
        let all = control
            .list_tasks(&TaskFilter {
                services: vec!["web".into()],
                ..Default::default()
            })
            .unwrap();
        wanted_running(&control, "web").len() == 2
            && all
                .iter()
                .filter(|t| t.status.state == TaskState::Running)
                .count()
                == 2
    })
    .await;

    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_the_node_stays_out() {
    let c = Cluster::builder().start().await;
    let d = tempfile::tempdir().unwrap();
    let ca_other = swarm::RootCa::generate().unwrap();
    let cfg = WorkerConfig::new(d.path()).join(c.manager().addr(), ca_other.new_join_token());
    let err = Worker::start(cfg, runtime(d.path())).await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_eq!(c.control().list_nodes(&Default::default()).len(), 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_survive_the_loss_of_the_leader() {
    let mut c = Cluster::builder().managers(3).start().await;
    // Every manager sees three managers, one leader.
    for m in &c.managers {
        let control = m.control().clone();
        eventually("three managers in every store", || {
            control
                .list_nodes(&Default::default())
                .iter()
                .filter(|n| n.manager_status.is_some())
                .count()
                == 3
        })
        .await;
    }
    // A write on a follower goes through the leader.
    let follower = c.managers.iter().find(|m| !m.is_leader()).unwrap();
    follower
        .control()
        .create_service(spec("web", 3))
        .await
        .unwrap();
    let control = c.control();
    let running = |c: &swarm::Control| {
        c.list_tasks(&TaskFilter {
            services: vec!["web".into()],
            ..Default::default()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .count()
    };
    eventually("3 running tasks", || running(&control) == 3).await;

    // Stop the leader: another takes over and the service stays at 3.
    c.stop_leader().await;
    eventually("a new leader", || c.leader().is_some()).await;
    let control = c.control();
    control.scale_service("web", 4).await.unwrap();
    eventually("4 wanted tasks", || {
        control
            .list_tasks(&TaskFilter {
                services: vec!["web".into()],
                ..Default::default()
            })
            .unwrap_or_default()
            .iter()
            .filter(|t| t.desired_state == TaskState::Running)
            .count()
            == 4
    })
    .await;
    // Remove the service: every task is gone from every node still up; the
    // stopped leader's tasks are removed by hand (nothing runs them anymore).
    c.remove_and_shutdown("web").await;
}

/// A swarm whose manager runs no tasks, with a short heartbeat period.
fn quick_cluster() -> swarm::testing::ClusterBuilder {
    let mut spec = ClusterSpec::default();
    spec.dispatcher.heartbeat_period = Duration::from_millis(200);
    Cluster::builder()
        .cluster_spec(spec)
        .managers_run_tasks(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_adopts_its_tasks_without_duplicates() {
    let mut c = quick_cluster().workers(1).start().await;
    let control = c.control();
    let node = c.workers[0].node_id().clone();
    control.create_service(spec("web", 2)).await.unwrap();
    eventually("2 running", || wanted_running(&control, "web").len() == 2).await;
    let before: Vec<(String, i32)> = wanted_running(&control, "web")
        .iter()
        .map(|t| {
            (
                t.id.to_string(),
                t.status.container_status.as_ref().unwrap().pid,
            )
        })
        .collect();
    c.workers.remove(0).shutdown().await;

    // Same data directory: the same node, no new join, the same processes.
    let wd = c.dir("worker1");
    let rt = runtime(&wd);
    let worker = Worker::start(WorkerConfig::new(&wd).hostname("worker1"), rt.clone())
        .await
        .unwrap();
    assert_eq!(worker.node_id(), &node);
    eventually("the node back to READY", || {
        control
            .inspect_node(&node)
            .is_ok_and(|n| n.status.state == NodeState::Ready)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 2, "no duplicate tasks on the node");
    let mut after: Vec<(String, i32)> = listed
        .iter()
        .map(|i| (i.labels.task_id.to_string(), i.container.pid))
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "the same tasks, the same processes");
    assert_eq!(wanted_running(&control, "web").len(), 2);
    assert_eq!(
        control.list_nodes(&Default::default()).len(),
        2,
        "no second node object"
    );

    // The cluster's runtime of the node reads the same directory as `rt`.
    c.workers.push(worker);
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_marked_down_and_its_tasks_move() {
    let mut c = quick_cluster().workers(2).start().await;
    let control = c.control();
    let w2 = c.workers[1].node_id().clone();
    control.create_service(spec("web", 2)).await.unwrap();
    eventually("one task per worker", || {
        let r = wanted_running(&control, "web");
        r.len() == 2 && r[0].node_id != r[1].node_id
    })
    .await;
    let dead = c.stop_worker(0).await; // stops heartbeating, like a crashed node
    eventually("the worker DOWN and both tasks on worker2", || {
        let down = control
            .inspect_node(&dead)
            .is_ok_and(|n| n.status.state == NodeState::Down);
        let r = wanted_running(&control, "web");
        down && r.len() == 2 && r.iter().all(|t| t.node_id == w2)
    })
    .await;
    // The stopped worker's tasks are removed by hand (nothing runs them).
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_rejected_and_retried_per_restart_policy() {
    let docker = match swarm::runtime::DockerRuntime::connect().await {
        Ok(d) => d.with_pull_policy(swarm::runtime::PullPolicy::Never),
        Err(e) => {
            eprintln!("skipping: no Docker Engine answers ({e})");
            return;
        }
    };
    let docker: Arc<dyn Runtime> = Arc::new(docker);
    let c = quick_cluster()
        .workers(1)
        .start_with(|_| docker.clone())
        .await;
    let control = c.control();
    let mut s = spec("ghost", 1);
    s.task.container.image = "swarm-test/does-not-exist:1".into();
    s.task.restart = Some(RestartPolicy {
        delay: Duration::ZERO,
        ..Default::default()
    });
    control.create_service(s).await.unwrap();
    eventually("two rejected attempts", || {
        let all = control
            .list_tasks(&TaskFilter {
                services: vec!["ghost".into()],
                ..Default::default()
            })
            .unwrap();
        let rejected: Vec<_> = all
            .iter()
            .filter(|t| t.status.state == TaskState::Rejected)
            .collect();
        rejected.len() >= 2
            && rejected
                .iter()
                .all(|t| t.status.err == "No such image: swarm-test/does-not-exist:1")
            && all.iter().any(|t| t.desired_state == TaskState::Running)
    })
    .await;
    control.remove_service("ghost").await.unwrap();
    c.shutdown().await;
}

async fn set_availability(control: &swarm::Control, node: &str, a: Availability) {
    let n = control.inspect_node(node).unwrap();
    let mut spec = n.spec.clone();
    spec.availability = a;
    control
        .update_node(node, n.meta.version.index, spec)
        .await
        .unwrap();
}

fn on_node(control: &swarm::Control, service: &str, node: &str) -> usize {
    let id = control.inspect_node(node).unwrap().id.clone();
    wanted_running(control, service)
        .iter()
        .filter(|t| t.node_id == id)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_pause_and_reactivate_follow_docker() {
    let c = Cluster::builder().workers(2).start().await;
    let control = c.control();
    c.until_ready().await;
    control.create_service(spec("web", 3)).await.unwrap();
    eventually("one task per node", || {
        ["manager1", "worker1", "worker2"]
            .iter()
            .all(|n| on_node(&control, "web", n) == 1)
    })
    .await;

    // Drain: worker1's task is shut down and placed elsewhere.
    set_availability(&control, "worker1", Availability::Drain).await;
    eventually("worker1 empty, 3 running elsewhere", || {
        on_node(&control, "web", "worker1") == 0 && wanted_running(&control, "web").len() == 3
    })
    .await;
    let rt_w1 = c.runtime(c.workers[0].node_id()).unwrap();
    Patience::within(Duration::from_secs(60))
        .every(Duration::from_millis(50))
        .until_async("the drained node's process stopped", async || {
            !rt_w1
                .list()
                .await
                .unwrap()
                .iter()
                .any(|t| t.state == swarm::runtime::ContainerState::Running)
        })
        .await;

    // Pause: worker2 keeps its task but takes no new one.
    set_availability(&control, "worker2", Availability::Pause).await;
    let before_w2 = on_node(&control, "web", "worker2");
    control.scale_service("web", 5).await.unwrap();
    eventually("5 running", || wanted_running(&control, "web").len() == 5).await;
    assert_eq!(
        on_node(&control, "web", "worker2"),
        before_w2,
        "paused node got no task"
    );
    assert_eq!(
        on_node(&control, "web", "worker1"),
        0,
        "drained node got no task"
    );

    // Active again: nothing moves back by itself; new tasks may go there.
    set_availability(&control, "worker1", Availability::Active).await;
    set_availability(&control, "worker2", Availability::Active).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        on_node(&control, "web", "worker1"),
        0,
        "old tasks stay where they are"
    );
    assert_eq!(wanted_running(&control, "web").len(), 5);
    control.scale_service("web", 6).await.unwrap();
    eventually("the new task on the empty node", || {
        on_node(&control, "web", "worker1") == 1 && wanted_running(&control, "web").len() == 6
    })
    .await;

    c.remove_and_shutdown("web").await;
}
