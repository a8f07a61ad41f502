//! Convergence: time from `service create` of a replicated service to every
//! replica RUNNING, on a swarm of 3 managers and 20 workers in one process over
//! loopback (mutual TLS, raft with fsync, process runtime running `sleep`).
//!
//! `cargo bench --bench convergence` runs 1,000 replicas; with `-- --test` (as
//! `cargo test --all-targets` does) it runs a small swarm and 20 replicas.
//! `-- --workers N --replicas R` changes the swarm (e.g. `--workers 100`: 100
//! worker nodes, each a real node with its own certificate, dispatcher session
//! over mutual TLS and process runtime).
//!
//! Environment: `CONVERGENCE_RUNTIME_DIR=/dev/shm` puts the process runtimes'
//! state on that file system (raft stays on disk); `CONVERGENCE_TRACE=1` prints
//! the task states as they are committed and how late the shared tokio runtime
//! wakes; `RUST_LOG=warn` shows the swarm's logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::core::types::*;
use swarm::runtime::{ProcessRuntime, Runtime};
use swarm::testing::Cluster;

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let test = args.iter().any(|a| a == "--test");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<u64>().expect("a number after the flag"))
    };
    let (managers, workers, replicas) = if test { (1, 2, 20) } else { (3, 20, 1000) };
    let workers = flag("--workers").map_or(workers, |w| w as usize);
    let replicas = flag("--replicas").unwrap_or(replicas);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(managers, workers, replicas, test));
}

async fn run(n_managers: usize, n_workers: usize, replicas: u64, test: bool) {
    // The process runtime's state (task records, pids, logs) goes under
    // CONVERGENCE_RUNTIME_DIR when set (e.g. a tmpfs, as containerd keeps its
    // state under /run); raft, certificates and node files stay in the
    // cluster's temporary directory.
    let runtime_base = match std::env::var_os("CONVERGENCE_RUNTIME_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("runtime temp dir"),
        None => tempfile::tempdir().expect("runtime temp dir"),
    };
    let c = Cluster::builder()
        .managers(n_managers)
        .workers(n_workers)
        .default_tick()
        .start_with(|node| -> Arc<dyn Runtime> {
            Arc::new(
                ProcessRuntime::new(runtime_base.path().join(node.hostname))
                    .expect("process runtime"),
            )
        })
        .await;
    let control = c.control();
    c.until_ready().await;

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
    let store = control.store().clone();
    let trace = std::env::var_os("CONVERGENCE_TRACE").is_some();
    if trace {
        // How late the shared runtime wakes a 5 ms sleeper: its workers carry
        // every node's RPC (raft included).
        tokio::spawn(async {
            let mut worst = Duration::ZERO;
            let mut since = Instant::now();
            loop {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(5)));
                if since.elapsed() >= Duration::from_millis(250) {
                    eprintln!("runtime lag: worst {worst:?} in the last 250 ms");
                    worst = Duration::ZERO;
                    since = Instant::now();
                }
            }
        });
    }
    // Follow the store (no polling that would compete with the swarm for the
    // two cores): every change of a task of the service, in commit order.
    let (_, mut watch) =
        store.view_and_watch(swarm::core::Filter::kinds([swarm::core::Kind::Task]));
    let started = Instant::now();
    let service = control.create_service(spec).await.expect("service create");
    let mut running = std::collections::HashSet::new();
    let mut by_state = std::collections::HashMap::<swarm::core::Id, TaskState>::new();
    let mut half = None;
    let mut last_trace = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while (running.len() as u64) < replicas {
        let event = tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut watch))
            .await
            .expect("timed out")
            .expect("store closed");
        for c in &event.changes {
            let Some(t) = c.object.downcast::<Task>() else {
                continue;
            };
            if t.service_id != service.id {
                continue;
            }
            if c.action != swarm::core::Action::Remove && t.status.state == TaskState::Running {
                running.insert(t.id.clone());
            } else {
                running.remove(&t.id);
            }
            by_state.insert(t.id.clone(), t.status.state);
        }
        if half.is_none() && running.len() as u64 * 2 >= replicas {
            half = Some(started.elapsed());
        }
        if trace && last_trace.elapsed() >= Duration::from_millis(100) {
            last_trace = Instant::now();
            let mut counts = std::collections::BTreeMap::<TaskState, usize>::new();
            for s in by_state.values() {
                *counts.entry(*s).or_default() += 1;
            }
            eprintln!(
                "{:>6} ms index {} {counts:?}",
                started.elapsed().as_millis(),
                event.version
            );
        }
    }
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
    c.until_no_tasks(Duration::from_secs(120)).await;
    c.shutdown().await;
    if test {
        println!("convergence bench (test mode): ok");
    }
}
