//! A whole swarm in one process over real sockets: one manager and two workers,
//! each with its own data directory and process runtime.

use std::sync::Arc;
use std::time::Duration;

use swarm::TaskFilter;
use swarm::core::types::*;
use swarm::runtime::Runtime;
use swarm::{Manager, ManagerConfig, Worker, WorkerConfig};

mod common;
use common::{eventually, runtime, sleep_spec as spec, wanted_running};

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    manager: Manager,
    workers: Vec<Worker>,
    runtimes: Vec<Arc<dyn Runtime>>,
}

async fn cluster(workers: usize) -> Cluster {
    let mut dirs = Vec::new();
    let mut runtimes = Vec::new();
    let d = tempfile::tempdir().unwrap();
    let rt = runtime(d.path());
    runtimes.push(rt.clone());
    let manager = Manager::start(
        ManagerConfig::new(d.path(), "127.0.0.1:0")
            .hostname("manager1")
            .runtime(rt)
            .tick_interval(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    dirs.push(d);
    let token = manager.control().join_tokens().unwrap().worker;
    let mut ws = Vec::new();
    for i in 1..=workers {
        let d = tempfile::tempdir().unwrap();
        let rt = runtime(d.path());
        runtimes.push(rt.clone());
        let cfg = WorkerConfig::new(d.path())
            .hostname(format!("worker{i}"))
            .join(manager.addr(), &token);
        ws.push(Worker::start(cfg, rt).await.unwrap());
        dirs.push(d);
    }
    Cluster {
        _dirs: dirs,
        manager,
        workers: ws,
        runtimes,
    }
}

/// Waits (bounded) until no runtime holds a task: what `service rm` must lead to.
async fn until_no_tasks(runtimes: &[Arc<dyn Runtime>]) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut left = 0;
            for rt in runtimes {
                left += rt.list().await.unwrap().len();
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every task of the removed service is gone from every node");
}

fn running(c: &Cluster, service: &str) -> Vec<std::sync::Arc<Task>> {
    c.manager
        .control()
        .list_tasks(&TaskFilter {
            services: vec![service.into()],
            ..Default::default()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_and_a_service_runs_scales_and_goes() {
    let c = cluster(2).await;
    let control = c.manager.control().clone();
    eventually("three ready nodes", || {
        control
            .list_nodes(&Default::default())
            .iter()
            .filter(|n| n.status.state == NodeState::Ready)
            .count()
            == 3
    })
    .await;

    let info = c.manager.info().unwrap();
    assert_eq!((info.managers, info.nodes), (1, 3));
    assert_eq!(
        info.remote_managers,
        vec![(c.manager.node_id().clone(), c.manager.addr().to_string())]
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
    eventually("3 running tasks", || running(&c, "web").len() == 3).await;
    let mut nodes: Vec<_> = running(&c, "web")
        .iter()
        .map(|t| t.node_id.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one per node");

    control.scale_service("web", 5).await.unwrap();
    eventually("5 running tasks", || running(&c, "web").len() == 5).await;
    control.scale_service("web", 2).await.unwrap();
    eventually("2 running tasks", || {
        let all = control
            .list_tasks(&TaskFilter {
                services: vec!["web".into()],
                ..Default::default()
            })
            .unwrap();
        running(&c, "web").len() == 2
            && all
                .iter()
                .filter(|t| t.status.state == TaskState::Running)
                .count()
                == 2
    })
    .await;

    control.remove_service("web").await.unwrap();
    until_no_tasks(&c.runtimes).await;
    for w in c.workers {
        w.shutdown().await;
    }
    c.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_the_node_stays_out() {
    let c = cluster(0).await;
    let d = tempfile::tempdir().unwrap();
    let ca_other = swarm::RootCa::generate().unwrap();
    let cfg = WorkerConfig::new(d.path()).join(c.manager.addr(), ca_other.new_join_token());
    let err = Worker::start(cfg, runtime(d.path())).await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_eq!(c.manager.control().list_nodes(&Default::default()).len(), 1);
    c.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_survive_the_loss_of_the_leader() {
    let mut dirs = Vec::new();
    let mut managers = Vec::new();
    let mut runtimes = Vec::new();
    let d = tempfile::tempdir().unwrap();
    runtimes.push(runtime(d.path()));
    let first = Manager::start(
        ManagerConfig::new(d.path(), "127.0.0.1:0")
            .hostname("manager1")
            .runtime(runtimes[0].clone())
            .tick_interval(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    dirs.push(d);
    let token = first.control().join_tokens().unwrap().manager;
    let remote = first.addr().to_string();
    managers.push(first);
    for i in 2..=3 {
        let d = tempfile::tempdir().unwrap();
        let rt = runtime(d.path());
        runtimes.push(rt.clone());
        let cfg = ManagerConfig::new(d.path(), "127.0.0.1:0")
            .hostname(format!("manager{i}"))
            .runtime(rt)
            .tick_interval(Duration::from_millis(20));
        managers.push(Manager::join(cfg, &remote, &token).await.unwrap());
        dirs.push(d);
    }
    // Every manager sees three managers, one leader.
    for m in &managers {
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
    let follower = managers.iter().find(|m| !m.is_leader()).unwrap();
    follower
        .control()
        .create_service(spec("web", 3))
        .await
        .unwrap();
    let control = managers[0].control().clone();
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
    let leader = managers.iter().position(|m| m.is_leader()).unwrap();
    let old = managers.remove(leader);
    old.shutdown().await;
    eventually("a new leader", || managers.iter().any(|m| m.is_leader())).await;
    let control = managers[0].control().clone();
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
    control.remove_service("web").await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut left = 0;
            for rt in &runtimes[..] {
                left += rt.list().await.unwrap().len();
            }
            if left == 0 {
                break;
            }
            for rt in &runtimes[leader..=leader] {
                for t in rt.list().await.unwrap() {
                    let _ = rt.remove(&t.labels.task_id).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no task left on any node");
    for m in managers {
        m.shutdown().await;
    }
}

/// A manager that runs no tasks, with a short heartbeat period.
async fn quick_manager(dir: &std::path::Path) -> Manager {
    let mut spec = ClusterSpec::default();
    spec.dispatcher.heartbeat_period = Duration::from_millis(200);
    Manager::start(
        ManagerConfig::new(dir, "127.0.0.1:0")
            .hostname("manager1")
            .cluster_spec(spec)
            .tick_interval(Duration::from_millis(20)),
    )
    .await
    .unwrap()
}

async fn remove_all(rt: &Arc<dyn Runtime>) {
    for t in rt.list().await.unwrap() {
        let _ = rt.remove(&t.labels.task_id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_adopts_its_tasks_without_duplicates() {
    let md = tempfile::tempdir().unwrap();
    let manager = quick_manager(md.path()).await;
    let control = manager.control().clone();
    let wd = tempfile::tempdir().unwrap();
    let token = control.join_tokens().unwrap().worker;
    let cfg = WorkerConfig::new(wd.path())
        .hostname("worker1")
        .join(manager.addr(), &token);
    let worker = Worker::start(cfg.clone(), runtime(wd.path()))
        .await
        .unwrap();
    let node = worker.node_id().clone();
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
    worker.shutdown().await;

    // Same data directory: the same node, no new join, the same processes.
    let rt = runtime(wd.path());
    let worker = Worker::start(WorkerConfig::new(wd.path()).hostname("worker1"), rt.clone())
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

    control.remove_service("web").await.unwrap();
    until_no_tasks(std::slice::from_ref(&rt)).await;
    worker.shutdown().await;
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_marked_down_and_its_tasks_move() {
    let md = tempfile::tempdir().unwrap();
    let manager = quick_manager(md.path()).await;
    let control = manager.control().clone();
    let token = control.join_tokens().unwrap().worker;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (rt1, rt2) = (runtime(d1.path()), runtime(d2.path()));
    let w1 = Worker::start(
        WorkerConfig::new(d1.path())
            .hostname("worker1")
            .join(manager.addr(), &token),
        rt1.clone(),
    )
    .await
    .unwrap();
    let w2 = Worker::start(
        WorkerConfig::new(d2.path())
            .hostname("worker2")
            .join(manager.addr(), &token),
        rt2.clone(),
    )
    .await
    .unwrap();
    control.create_service(spec("web", 2)).await.unwrap();
    eventually("one task per worker", || {
        let r = wanted_running(&control, "web");
        r.len() == 2 && r[0].node_id != r[1].node_id
    })
    .await;
    let dead = w1.node_id().clone();
    w1.shutdown().await; // stops heartbeating, like a crashed node
    eventually("the worker DOWN and both tasks on worker2", || {
        let down = control
            .inspect_node(&dead)
            .is_ok_and(|n| n.status.state == NodeState::Down);
        let r = wanted_running(&control, "web");
        down && r.len() == 2 && r.iter().all(|t| t.node_id == *w2.node_id())
    })
    .await;
    control.remove_service("web").await.unwrap();
    remove_all(&rt1).await;
    until_no_tasks(std::slice::from_ref(&rt2)).await;
    w2.shutdown().await;
    manager.shutdown().await;
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
    let md = tempfile::tempdir().unwrap();
    let manager = quick_manager(md.path()).await;
    let control = manager.control().clone();
    let wd = tempfile::tempdir().unwrap();
    let token = control.join_tokens().unwrap().worker;
    let worker = Worker::start(
        WorkerConfig::new(wd.path())
            .hostname("docker-worker")
            .join(manager.addr(), &token),
        Arc::new(docker),
    )
    .await
    .unwrap();
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
    worker.shutdown().await;
    manager.shutdown().await;
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
    let c = cluster(2).await;
    let control = c.manager.control().clone();
    eventually("three ready nodes", || {
        control
            .list_nodes(&Default::default())
            .iter()
            .filter(|n| n.status.state == NodeState::Ready)
            .count()
            == 3
    })
    .await;
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
    let rt_w1 = &c.runtimes[1];
    tokio::time::timeout(Duration::from_secs(60), async {
        while rt_w1
            .list()
            .await
            .unwrap()
            .iter()
            .any(|t| t.state == swarm::runtime::ContainerState::Running)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the drained node's process is stopped");

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

    control.remove_service("web").await.unwrap();
    until_no_tasks(&c.runtimes).await;
    for w in c.workers {
        w.shutdown().await;
    }
    c.manager.shutdown().await;
}
