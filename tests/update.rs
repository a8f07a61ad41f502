//! Rolling updates, rollbacks and jobs on a swarm in one process over real
//! sockets: one manager and two workers, each with its own data directory.
//!
//! Every node runs tasks with the process runtime behind a node-local image
//! cache: a task's image must be "pulled" on the node (a file named after it in
//! the node's image directory) or the task is REJECTED with `No such image`,
//! as a Docker node without the image and no registry would. The tasks
//! themselves are processes (`sleep`, or a command that fails).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm::Control;
use swarm::core::Timestamp;
use swarm::core::types::*;
use swarm::runtime::ProcessRuntime;
use swarm::runtime::testing::ImageCache;
use swarm::testing::{Cluster, PATIENCE, Patience, eventually, tasks, wanted_running as running};

/// The process runtime with a node-local image cache.
type Node = ImageCache<ProcessRuntime>;

/// A node's runtime in `dir`, holding `images`.
fn node(dir: &Path, images: &[&str]) -> Arc<Node> {
    let n = ImageCache::new(ProcessRuntime::new(dir.join("runtime")).unwrap());
    for i in images {
        n.pull(*i);
    }
    Arc::new(n)
}

/// A manager and two workers, ready; `images[i]` are the images node `i`
/// holds. The nodes' runtimes, in node order.
async fn start(images: [&[&str]; 3]) -> (Cluster, Vec<Arc<Node>>) {
    let mut nodes = Vec::new();
    let c = Cluster::builder()
        .workers(2)
        .start_with(|n| {
            let rt = node(n.path, images[n.index]);
            nodes.push(rt.clone());
            rt
        })
        .await;
    c.until_ready().await;
    (c, nodes)
}

/// [`eventually`], showing the service and its tasks when it times out.
async fn eventually_on<F: Fn() -> bool>(control: &Control, service: &str, what: &str, f: F) {
    if !PATIENCE.poll(f).await {
        let rows: Vec<String> = tasks(control, service)
            .iter()
            .map(|t| {
                format!(
                    "{} slot {} node {} {} desired {:?} state {:?} {}",
                    t.id,
                    t.slot,
                    t.node_id,
                    t.spec.container.image,
                    t.desired_state,
                    t.status.state,
                    t.status.err
                )
            })
            .collect();
        panic!(
            "timed out waiting for {what}: {:?}\n{}",
            status(control, service),
            rows.join("\n")
        );
    }
}

const SLEEP: &str = "sleep 600";
const FAIL: &str = "sleep 0.2; exit 3";

fn spec(name: &str, image: &str, replicas: u64, update: UpdateConfig) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named(name),
        task: TaskSpec {
            container: ContainerSpec {
                image: image.into(),
                command: vec!["/bin/sh".into(), "-c".into(), SLEEP.into()],
                stop_grace_period: Some(Duration::from_secs(2)),
                ..Default::default()
            },
            restart: Some(RestartPolicy {
                delay: Duration::from_millis(300),
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

fn update_config(parallelism: u64, delay: Duration) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        delay,
        monitor: Duration::from_millis(500),
        ..Default::default()
    }
}

fn all_running_with(control: &Control, service: &str, n: usize, image: &str) -> bool {
    let r = running(control, service);
    r.len() == n && r.iter().all(|t| t.spec.container.image == image)
}

fn status(control: &Control, service: &str) -> UpdateStatus {
    control
        .inspect_service(service)
        .ok()
        .and_then(|s| s.update_status.clone())
        .unwrap_or_default()
}

async fn update(control: &Control, service: &str, f: impl FnOnce(&mut ServiceSpec)) {
    let s = control.inspect_service(service).unwrap();
    let mut spec = s.spec.clone();
    f(&mut spec);
    control
        .update_service(service, s.meta.version.index, spec)
        .await
        .unwrap();
}

/// Follows an update until `done`, recording per poll how many slots have a
/// task of `image` that is wanted but not yet running (in flight), and when each
/// slot first got such a task.
async fn follow(
    control: &Control,
    service: &str,
    image: &str,
    done: impl Fn() -> bool,
) -> (usize, BTreeMap<u64, Timestamp>) {
    let mut max_in_flight = 0;
    let mut first: BTreeMap<u64, Timestamp> = BTreeMap::new();
    Patience::within(Duration::from_secs(90))
        .every(Duration::from_millis(10))
        .until("the update to finish", || {
            if done() {
                return true;
            }
            let ts = tasks(control, service);
            let in_flight: BTreeSet<u64> = ts
                .iter()
                .filter(|t| {
                    t.spec.container.image == image
                        && t.desired_state <= TaskState::Running
                        && t.status.state < TaskState::Running
                })
                .map(|t| t.slot)
                .collect();
            max_in_flight = max_in_flight.max(in_flight.len());
            for t in ts.iter().filter(|t| t.spec.container.image == image) {
                let e = first.entry(t.slot).or_insert(t.meta.created_at);
                *e = (*e).min(t.meta.created_at);
            }
            false
        })
        .await;
    for t in tasks(control, service)
        .iter()
        .filter(|t| t.spec.container.image == image)
    {
        let e = first.entry(t.slot).or_insert(t.meta.created_at);
        *e = (*e).min(t.meta.created_at);
    }
    (max_in_flight, first)
}

const ALL: &[&str] = &["app:1", "app:2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_change_updates_one_slot_at_a_time_in_order() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    let delay = Duration::from_secs(1);
    control
        .create_service(spec("web", "app:1", 3, update_config(1, delay)))
        .await
        .unwrap();
    eventually("3 running v1", || {
        all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    assert_eq!(status(&control, "web").state, UpdateState::Unknown);

    update(&control, "web", |s| s.task.container.image = "app:2".into()).await;
    let (in_flight, first) = follow(&control, "web", "app:2", || {
        status(&control, "web").state == UpdateState::Completed
    })
    .await;
    assert!(in_flight <= 1, "{in_flight} slots updated at once");
    let order: Vec<u64> = {
        let mut v: Vec<(Timestamp, u64)> = first.iter().map(|(s, t)| (*t, *s)).collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    };
    assert_eq!(order, [1, 2, 3], "slots in order");
    let times: Vec<Timestamp> = first.values().copied().collect();
    for w in times.windows(2) {
        assert!(w[1].since(w[0]) >= delay, "the delay separates batches");
    }
    let st = status(&control, "web");
    assert_eq!(st.message, "update completed");
    assert!(st.started_at.is_some() && st.completed_at >= st.started_at);
    assert!(all_running_with(&control, "web", 3, "app:2"));
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_two_updates_two_slots_per_batch() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    control
        .create_service(spec(
            "web",
            "app:1",
            4,
            update_config(2, Duration::from_millis(500)),
        ))
        .await
        .unwrap();
    eventually("4 running v1", || {
        all_running_with(&control, "web", 4, "app:1")
    })
    .await;
    update(&control, "web", |s| s.task.container.image = "app:2".into()).await;
    let (in_flight, first) = follow(&control, "web", "app:2", || {
        status(&control, "web").state == UpdateState::Completed
    })
    .await;
    assert!(in_flight <= 2, "{in_flight} slots updated at once");
    // The first batch is two slots made in one pass.
    assert_eq!(first[&1], first[&2], "slots 1 and 2 in one batch");
    assert!(first[&3] > first[&2] && first[&4] > first[&2]);
    assert!(all_running_with(&control, "web", 4, "app:2"));
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_version_pauses_and_a_fix_resumes() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    // The delay (2 s) outlasts the failing version's life (0.2 s): the failure
    // is seen before the next slot is updated.
    control
        .create_service(spec(
            "web",
            "app:1",
            3,
            update_config(1, Duration::from_secs(2)),
        ))
        .await
        .unwrap();
    eventually("3 running v1", || {
        all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    update(&control, "web", |s| {
        s.task.container.image = "app:2".into();
        s.task.container.command[2] = FAIL.into();
    })
    .await;
    eventually("the update paused", || {
        status(&control, "web").state == UpdateState::Paused
    })
    .await;
    let st = status(&control, "web");
    let failed_id = st
        .message
        .strip_prefix("update paused due to failure or early termination of task ")
        .unwrap_or_else(|| panic!("message: {}", st.message))
        .to_string();
    let failed = control.inspect_task(&failed_id).unwrap();
    assert_eq!(failed.status.state, TaskState::Failed);
    assert_eq!(failed.status.err, "task: non-zero exit (3)");
    // The other two slots stay on the old version.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old: Vec<_> = running(&control, "web")
        .into_iter()
        .filter(|t| t.spec.container.image == "app:1")
        .collect();
    assert_eq!(old.len(), 2, "two slots still on v1");
    assert_eq!(status(&control, "web").state, UpdateState::Paused);

    // The fix: a working command; the update resumes and completes.
    update(&control, "web", |s| {
        s.task.container.command[2] = SLEEP.into()
    })
    .await;
    eventually("the update completed", || {
        status(&control, "web").state == UpdateState::Completed
    })
    .await;
    assert!(all_running_with(&control, "web", 3, "app:2"));
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_action_rollback_restores_the_old_spec() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    let mut cfg = update_config(1, Duration::from_secs(2));
    cfg.failure_action = FailureAction::Rollback;
    control
        .create_service(spec("web", "app:1", 3, cfg))
        .await
        .unwrap();
    eventually("3 running v1", || {
        all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    update(&control, "web", |s| {
        s.task.container.image = "app:2".into();
        s.task.container.command[2] = FAIL.into();
    })
    .await;
    eventually("the rollback completed", || {
        status(&control, "web").state == UpdateState::RollbackCompleted
    })
    .await;
    let svc = control.inspect_service("web").unwrap();
    assert_eq!(svc.spec.task.container.image, "app:1");
    assert_eq!(svc.spec.task.container.command[2], SLEEP);
    assert_eq!(
        svc.update_status.as_ref().unwrap().message,
        "rollback completed"
    );
    eventually("3 running v1 again", || {
        all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rollback_returns_to_the_previous_spec() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    control
        .create_service(spec("web", "app:1", 2, update_config(0, Duration::ZERO)))
        .await
        .unwrap();
    let err = control.rollback_service("web").await.unwrap_err();
    assert!(
        err.to_string().contains("does not have a previous spec"),
        "{err}"
    );
    eventually("2 running v1", || {
        all_running_with(&control, "web", 2, "app:1")
    })
    .await;
    update(&control, "web", |s| s.task.container.image = "app:2".into()).await;
    eventually("update completed", || {
        status(&control, "web").state == UpdateState::Completed
    })
    .await;
    control.rollback_service("web").await.unwrap();
    assert_eq!(
        status(&control, "web").message,
        "manually requested rollback"
    );
    eventually("rollback completed", || {
        status(&control, "web").state == UpdateState::RollbackCompleted
    })
    .await;
    assert!(all_running_with(&control, "web", 2, "app:1"));
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_first_keeps_every_replica_running_throughout() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    let mut cfg = update_config(1, Duration::ZERO);
    cfg.order = UpdateOrder::StartFirst;
    control
        .create_service(spec("web", "app:1", 3, cfg))
        .await
        .unwrap();
    eventually("3 running v1", || {
        all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    update(&control, "web", |s| s.task.container.image = "app:2".into()).await;
    let mut min_running = usize::MAX;
    Patience::within(Duration::from_secs(90))
        .every(Duration::from_millis(5))
        .until("the update completed", || {
            if status(&control, "web").state == UpdateState::Completed {
                return true;
            }
            // Observed RUNNING, whatever is wanted: what serves traffic.
            let n = tasks(&control, "web")
                .iter()
                .filter(|t| t.status.state == TaskState::Running)
                .count();
            min_running = min_running.min(n);
            false
        })
        .await;
    assert!(min_running >= 3, "{min_running} running at one point");
    assert!(all_running_with(&control, "web", 3, "app:2"));
    c.remove_and_shutdown("web").await;
}

/// The tutorial: three replicas of redis:3.0.6 updated to redis:3.0.7 while one
/// node lacks 3.0.7: its task is REJECTED ("No such image") and retried, the
/// update pauses; once the image is on the node the task runs, and
/// `docker service update redis` (no change) finishes the update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_update_with_a_node_missing_the_image() {
    let (a, b) = ("redis:3.0.6", "redis:3.0.7");
    let (c, nodes) = start([&[a, b], &[a, b], &[a]]).await;
    let control = c.control();
    let mut s = spec("redis", a, 3, update_config(1, Duration::from_secs(1)));
    // One task per node, so the slot on the node lacking 3.0.7 stays there.
    s.task.placement = Some(Placement {
        max_replicas: 1,
        ..Default::default()
    });
    control.create_service(s).await.unwrap();
    eventually("3 running 3.0.6", || {
        all_running_with(&control, "redis", 3, a)
    })
    .await;
    let lacking = c.workers[1].node_id().clone();

    update(&control, "redis", |s| s.task.container.image = b.into()).await;
    eventually("rejections retried on the node without the image", || {
        tasks(&control, "redis")
            .iter()
            .filter(|t| {
                t.status.state == TaskState::Rejected
                    && t.node_id == lacking
                    && t.status.err == format!("No such image: {b}")
            })
            .count()
            >= 2
    })
    .await;
    let st = status(&control, "redis");
    assert_eq!(st.state, UpdateState::Paused, "{st:?}");
    assert!(
        st.message
            .starts_with("update paused due to failure or early termination of task "),
        "{}",
        st.message
    );

    // docker pull redis:3.0.7 on that node: the retried task runs.
    nodes[2].pull(b);
    eventually("the task on that node running 3.0.7", || {
        running(&control, "redis")
            .iter()
            .any(|t| t.node_id == lacking && t.spec.container.image == b)
    })
    .await;
    // docker service update redis: the paused update resumes and completes.
    update(&control, "redis", |_| {}).await;
    eventually_on(&control, "redis", "update completed", || {
        status(&control, "redis").state == UpdateState::Completed
    })
    .await;
    assert!(all_running_with(&control, "redis", 3, b));
    assert_eq!(status(&control, "redis").message, "update completed");
    c.remove_and_shutdown("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_during_an_update_keeps_the_count_and_finishes() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    control
        .create_service(spec(
            "web",
            "app:1",
            4,
            update_config(1, Duration::from_millis(500)),
        ))
        .await
        .unwrap();
    eventually("4 running v1", || {
        all_running_with(&control, "web", 4, "app:1")
    })
    .await;
    update(&control, "web", |s| s.task.container.image = "app:2".into()).await;
    eventually("one slot updated", || {
        running(&control, "web")
            .iter()
            .any(|t| t.spec.container.image == "app:2")
    })
    .await;
    let drained = c.workers[0].node_id().clone();
    let node = control.inspect_node(&drained).unwrap();
    let mut ns = node.spec.clone();
    ns.availability = Availability::Drain;
    control
        .update_node(&drained, node.meta.version.index, ns)
        .await
        .unwrap();
    // Scale during the update too.
    update(&control, "web", |s| {
        s.mode = ServiceMode::Replicated { replicas: 5 }
    })
    .await;
    eventually("update completed", || {
        status(&control, "web").state == UpdateState::Completed
    })
    .await;
    eventually("5 running v2, none on the drained node", || {
        let r = running(&control, "web");
        all_running_with(&control, "web", 5, "app:2") && r.iter().all(|t| t.node_id != drained)
    })
    .await;
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_job_runs_to_its_completions() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    let mut s = spec("batch", "app:1", 0, update_config(1, Duration::ZERO));
    s.mode = ServiceMode::ReplicatedJob {
        max_concurrent: 2,
        total_completions: 5,
    };
    s.task.container.command[2] = "sleep 0.3".into();
    control.create_service(s).await.unwrap();
    let mut max_running = 0;
    Patience::within(Duration::from_secs(90))
        .every(Duration::from_millis(10))
        .until("the job to complete", || {
            let p = control.job_progress("batch").unwrap();
            max_running = max_running.max(p.running);
            p.completed == 5
        })
        .await;
    assert!(max_running <= 2, "{max_running} at once");
    // Completed tasks are not restarted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p = control.job_progress("batch").unwrap();
    assert_eq!((p.completed, p.running, p.desired), (5, 0, 5));
    assert_eq!(tasks(&control, "batch").len(), 5);
    c.remove_and_shutdown("batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_job_runs_once_per_node() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    let mut s = spec("once", "app:1", 0, update_config(1, Duration::ZERO));
    s.mode = ServiceMode::GlobalJob;
    s.task.container.command[2] = "sleep 0.2".into();
    control.create_service(s).await.unwrap();
    eventually("one completion per node", || {
        control
            .job_progress("once")
            .is_ok_and(|p| p.completed == 3 && p.desired == 3)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        tasks(&control, "once").len(),
        3,
        "no restart after COMPLETE"
    );
    c.remove_and_shutdown("once").await;
}

/// Three managers, each running tasks: the leader stops in the middle of an
/// update; the new leader finds the update in the store, keeps the replica
/// count (the stopped node's tasks move) and finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_failover_during_an_update_finishes_it() {
    let mut cs = ClusterSpec::default();
    cs.dispatcher.heartbeat_period = Duration::from_millis(300);
    let mut c = Cluster::builder()
        .managers(3)
        .cluster_spec(cs)
        .start_with(|n| node(n.path, ALL))
        .await;
    for m in &c.managers {
        let control = m.control().clone();
        eventually("three ready managers in every store", || {
            control
                .list_nodes(&Default::default())
                .iter()
                .filter(|n| n.manager_status.is_some() && n.status.state == NodeState::Ready)
                .count()
                == 3
        })
        .await;
    }
    let control = c.control();
    control
        .create_service(spec(
            "web",
            "app:1",
            3,
            update_config(1, Duration::from_secs(1)),
        ))
        .await
        .unwrap();
    eventually("3 running v1", || {
        all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    update(&control, "web", |s| s.task.container.image = "app:2".into()).await;
    eventually("one slot updated", || {
        running(&control, "web")
            .iter()
            .any(|t| t.spec.container.image == "app:2")
    })
    .await;
    assert_eq!(status(&control, "web").state, UpdateState::Updating);

    let gone_node = c.stop_leader().await;
    eventually("a new leader", || c.leader().is_some()).await;
    let control = c.control();
    eventually_on(
        &control,
        "web",
        "the update completed on the new leader",
        || {
            status(&control, "web").state == UpdateState::Completed
                && all_running_with(&control, "web", 3, "app:2")
                && running(&control, "web")
                    .iter()
                    .all(|t| t.node_id != gone_node)
        },
    )
    .await;

    // Nothing runs the stopped manager's node any more: its tasks are removed
    // by hand.
    c.remove_and_shutdown("web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_update_redeploys_every_task_without_a_change() {
    let (c, _) = start([ALL, ALL, ALL]).await;
    let control = c.control();
    control
        .create_service(spec("web", "app:1", 3, update_config(0, Duration::ZERO)))
        .await
        .unwrap();
    eventually("3 running", || {
        all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    let before: BTreeSet<String> = running(&control, "web")
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    update(&control, "web", |s| s.task.force_update += 1).await;
    eventually_on(&control, "web", "update completed", || {
        status(&control, "web").state == UpdateState::Completed
            && all_running_with(&control, "web", 3, "app:1")
    })
    .await;
    let after: BTreeSet<String> = running(&control, "web")
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert!(before.is_disjoint(&after), "every task replaced");
    c.remove_and_shutdown("web").await;
}
