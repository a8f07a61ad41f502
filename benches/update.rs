//! Rolling update: time from `service update` (a new image) to the update's
//! status COMPLETED, for a replicated service on a swarm in one process over
//! loopback (mutual TLS, raft with fsync, process runtime running `sleep`),
//! with parallelism 10, no delay, stop-first. The only configured wait is the
//! monitor period after the last batch; the rest is the manager's overhead plus
//! the nodes stopping and starting processes.
//!
//! `cargo bench --bench update` rolls 100 replicas over 1 manager + 4 workers
//! with the default 5 s monitor; with `-- --test` (as `cargo test --benches`
//! does) it rolls 10 replicas with a 200 ms monitor.

use std::time::{Duration, Instant};

use swarm::TaskFilter;
use swarm::core::types::*;
use swarm::testing::{Cluster, Patience};

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let (workers, replicas, monitor) = if test {
        (2, 10, Duration::from_millis(200))
    } else {
        (4, 100, Duration::from_secs(5))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(workers, replicas, monitor, test));
}

async fn run(n_workers: usize, replicas: u64, monitor: Duration, test: bool) {
    let c = Cluster::builder()
        .workers(n_workers)
        .default_tick()
        .start()
        .await;
    let control = c.control();
    c.until_ready().await;

    let update = UpdateConfig {
        parallelism: 10,
        delay: Duration::ZERO,
        monitor,
        ..Default::default()
    };
    let spec = ServiceSpec {
        annotations: Annotations::named("rollers"),
        task: TaskSpec {
            container: ContainerSpec {
                image: "app:1".into(),
                command: vec!["sleep".into(), "3600".into()],
                stop_grace_period: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas },
        update: Some(update),
        ..Default::default()
    };
    control.create_service(spec).await.expect("service create");
    let running_with = |image: &str| {
        control
            .list_tasks(&TaskFilter {
                services: vec!["rollers".into()],
                ..Default::default()
            })
            .map(|ts| {
                ts.iter()
                    .filter(|t| {
                        t.status.state == TaskState::Running
                            && t.desired_state == TaskState::Running
                            && t.spec.container.image == image
                    })
                    .count() as u64
            })
            .unwrap_or(0)
    };
    Patience::within(Duration::from_secs(300))
        .every(Duration::from_millis(10))
        .until("every replica running", || {
            running_with("app:1") == replicas
        })
        .await;

    let s = control.inspect_service("rollers").expect("inspect");
    let mut new = s.spec.clone();
    new.task.container.image = "app:2".into();
    let started = Instant::now();
    control
        .update_service("rollers", s.meta.version.index, new)
        .await
        .expect("service update");
    let mut all_new = None;
    Patience::within(Duration::from_secs(600))
        .every(Duration::from_millis(10))
        .until("the update completed", || {
            if all_new.is_none() && running_with("app:2") == replicas {
                all_new = Some(started.elapsed());
            }
            control
                .inspect_service("rollers")
                .ok()
                .and_then(|s| s.update_status.clone())
                .is_some_and(|st| st.state == UpdateState::Completed)
        })
        .await;
    let total = started.elapsed();
    let all_new = all_new.unwrap_or(total);
    let overhead = total.saturating_sub(monitor);
    println!(
        "update: {replicas} replicas, parallelism 10, no delay, monitor {monitor:?}, 1 manager + {n_workers} workers: \
         every task on the new image after {all_new:?}, COMPLETED after {total:?} \
         (overhead beyond the monitor period: {overhead:?})"
    );
    control.remove_service("rollers").await.expect("service rm");
    c.until_no_tasks(Duration::from_secs(120)).await;
    c.shutdown().await;
    if test {
        println!("update bench (test mode): ok");
    }
}
