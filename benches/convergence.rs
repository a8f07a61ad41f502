//! Convergence: time from `service create` of a replicated service to every
//! replica RUNNING, on a swarm of 3 managers and 20 workers in one process over
//! loopback (mutual TLS, raft with fsync, process runtime running `sleep`).
//!
//! `cargo bench --bench convergence` runs 1,000 replicas; with `-- --test` (as
//! `cargo test --all-targets` does) it runs a small swarm and 20 replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::control::TaskFilter;
use swarm::core::types::*;
use swarm::runtime::{ProcessRuntime, Runtime};
use swarm::{Manager, ManagerConfig, Worker, WorkerConfig};

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let (managers, workers, replicas) = if test { (1, 2, 20) } else { (3, 20, 1000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(managers, workers, replicas, test));
}

async fn run(n_managers: usize, n_workers: usize, replicas: u64, test: bool) {
    let base = tempfile::tempdir().expect("temp dir");
    let runtimes = std::cell::RefCell::new(Vec::<Arc<dyn Runtime>>::new());
    let runtime = |name: &str| -> Arc<dyn Runtime> {
        let rt: Arc<dyn Runtime> = Arc::new(
            ProcessRuntime::new(base.path().join(name).join("runtime")).expect("process runtime"),
        );
        runtimes.borrow_mut().push(rt.clone());
        rt
    };
    let first = Manager::start(
        ManagerConfig::new(base.path().join("m1"), "127.0.0.1:0")
            .hostname("m1")
            .runtime(runtime("m1")),
    )
    .await
    .expect("manager");
    let tokens = first.control().join_tokens().expect("tokens");
    let remote = first.addr().to_string();
    let mut managers = vec![first];
    for i in 2..=n_managers {
        let name = format!("m{i}");
        let cfg = ManagerConfig::new(base.path().join(&name), "127.0.0.1:0")
            .hostname(&name)
            .runtime(runtime(&name));
        managers.push(
            Manager::join(cfg, &remote, &tokens.manager)
                .await
                .expect("manager join"),
        );
    }
    let mut workers = Vec::new();
    for i in 1..=n_workers {
        let name = format!("w{i}");
        let cfg = WorkerConfig::new(base.path().join(&name))
            .hostname(&name)
            .join(remote.clone(), tokens.worker.clone());
        workers.push(Worker::start(cfg, runtime(&name)).await.expect("worker"));
    }
    let control = managers[0].control().clone();
    let nodes = n_managers + n_workers;
    wait(Duration::from_secs(60), || {
        control
            .list_nodes(&Default::default())
            .iter()
            .filter(|n| n.status.state == NodeState::Ready)
            .count()
            == nodes
    })
    .await;

    let spec = ServiceSpec {
        annotations: Annotations::named("sleepers"),
        task: TaskSpec {
            container: ContainerSpec {
                image: "busybox".into(),
                command: vec!["sleep".into(), "3600".into()],
                stop_grace_period: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas },
        ..Default::default()
    };
    let started = Instant::now();
    control.create_service(spec).await.expect("service create");
    let running = || {
        control
            .list_tasks(&TaskFilter {
                services: vec!["sleepers".into()],
                ..Default::default()
            })
            .map(|ts| {
                ts.iter()
                    .filter(|t| t.status.state == TaskState::Running)
                    .count()
            })
            .unwrap_or(0)
    };
    let mut half = None;
    wait(Duration::from_secs(300), || {
        let r = running() as u64;
        if half.is_none() && r * 2 >= replicas {
            half = Some(started.elapsed());
        }
        r == replicas
    })
    .await;
    let all = started.elapsed();
    println!(
        "convergence: {replicas} replicas on {n_managers} managers + {n_workers} workers: 50% RUNNING after {:?}, 100% after {:?} ({:.0} tasks/s)",
        half.unwrap_or_default(),
        all,
        replicas as f64 / all.as_secs_f64()
    );
    control
        .remove_service("sleepers")
        .await
        .expect("service rm");
    // Every node stops and removes its tasks before the swarm goes (a node that
    // shuts down leaves its tasks running, for a restart to adopt).
    let runtimes = runtimes.into_inner();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut left = 0;
        for rt in &runtimes {
            left += rt.list().await.expect("list tasks").len();
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} tasks still on the nodes after service rm"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in workers {
        w.shutdown().await;
    }
    for m in managers {
        m.shutdown().await;
    }
    if test {
        println!("convergence bench (test mode): ok");
    }
}

async fn wait(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
