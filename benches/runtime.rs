//! Runtime benchmark: for N tasks (100 by default), the time from `start` to an
//! observed RUNNING and from `stop` to removed, on the process runtime and on the
//! Docker runtime, with `docker run -d` / `docker stop` + `docker rm` of the same
//! image timed in the same run for comparison.
//!
//! Run: `cargo bench --bench runtime` (`SWARM_BENCH_TASKS=N` to change N;
//! `-- --test` runs 3 tasks, as CI does). The Docker part needs an engine and builds
//! its image with `scripts/build-test-image.sh`; it is skipped, saying why, when
//! either is missing. Figures are in BENCHMARKS.md.
//!
//! One measured round per figure (a round of 100 Docker containers takes tens of
//! seconds); tasks run one after the other, as an agent starting tasks in turn.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::Id;
use swarm_core::types::{Annotations, Task, TaskState};
use swarm_runtime::{ContainerState, DockerRuntime, ProcessRuntime, PullPolicy, Runtime};

const IMAGE: &str = "swarm-test/busybox:1";
const PREFIX: &str = "swb";
/// Exits at once on SIGTERM in a container (where pid 1 has no default handlers)
/// as well as in a process group.
const SCRIPT: &str = "trap 'exit 0' TERM; sleep 300 & wait";

fn task(kind: &str, i: usize) -> Task {
    let mut t = Task {
        id: Id::from(format!("{PREFIX}-{kind}-{i}-{}", &Id::generate()[..8])),
        service_id: Id::from(format!("{PREFIX}-svc")),
        node_id: Id::from(format!("{PREFIX}-node")),
        slot: i as u64 + 1,
        service_annotations: Annotations::named(format!("{PREFIX}-{kind}")),
        desired_state: TaskState::Running,
        ..Default::default()
    };
    t.spec.container.image = IMAGE.into();
    t.spec.container.command = vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()];
    t.spec.container.stop_grace_period = Some(Duration::from_secs(10));
    t
}

struct Figures {
    /// create (untimed) then start → observed RUNNING, all tasks.
    start: Duration,
    /// create + start → observed RUNNING, all tasks (what `docker run -d` does).
    create_start: Duration,
    /// stop → removed, all tasks.
    stop_remove: Duration,
}

async fn until_running(rt: &dyn Runtime, id: &str) {
    loop {
        match rt.inspect(id).await {
            Ok(i) if i.state == ContainerState::Running => return,
            Ok(i) if i.state == ContainerState::Exited => panic!("{id} exited at start"),
            Ok(_) => tokio::task::yield_now().await,
            Err(e) => panic!("inspect {id}: {e}"),
        }
    }
}

async fn round(rt: Arc<dyn Runtime>, kind: &str, n: usize) -> Figures {
    // start → RUNNING, with the tasks created beforehand.
    let tasks: Vec<Task> = (0..n).map(|i| task(kind, i)).collect();
    for t in &tasks {
        rt.prepare(t).await.expect("prepare");
        rt.create(t).await.expect("create");
    }
    let began = Instant::now();
    for t in &tasks {
        rt.start(&t.id).await.expect("start");
        until_running(rt.as_ref(), &t.id).await;
    }
    let start = began.elapsed();
    let began = Instant::now();
    for t in &tasks {
        rt.stop(&t.id, None).await.expect("stop");
        rt.remove(&t.id).await.expect("remove");
    }
    let stop_remove = began.elapsed();

    // create + start → RUNNING.
    let tasks: Vec<Task> = (0..n).map(|i| task(kind, i)).collect();
    let began = Instant::now();
    for t in &tasks {
        rt.create(t).await.expect("create");
        rt.start(&t.id).await.expect("start");
        until_running(rt.as_ref(), &t.id).await;
    }
    let create_start = began.elapsed();
    for t in &tasks {
        rt.remove(&t.id).await.expect("remove");
    }
    Figures {
        start,
        create_start,
        stop_remove,
    }
}

/// `docker run -d` then `docker stop` + `docker rm`, N times, through the CLI.
fn docker_cli(n: usize) -> (Duration, Duration) {
    let names: Vec<String> = (0..n)
        .map(|i| format!("{PREFIX}-cli-{i}-{}", &Id::generate()[..8]))
        .collect();
    let began = Instant::now();
    for name in &names {
        let ok = Command::new("docker")
            .args(["run", "-d", "--name", name, IMAGE, "/bin/sh", "-c", SCRIPT])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "docker run -d failed");
    }
    let run = began.elapsed();
    let began = Instant::now();
    for name in &names {
        let _ = Command::new("docker").args(["stop", name]).output();
        let _ = Command::new("docker").args(["rm", name]).output();
    }
    (run, began.elapsed())
}

fn remove_leftovers() {
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^/{PREFIX}-")])
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

fn line(what: &str, n: usize, d: Duration) {
    println!(
        "{what:<48} {n:>4} tasks {:>9.1} ms  {:>8.2} ms/task  {:>8.0} tasks/s",
        d.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3 / n as f64,
        n as f64 / d.as_secs_f64()
    );
}

async fn docker_part(n: usize) -> Result<(), String> {
    let rt = DockerRuntime::connect()
        .await
        .map_err(|e| format!("no Docker Engine answers ({e})"))?
        .with_pull_policy(PullPolicy::Never);
    rt.client()
        .ping()
        .await
        .map_err(|e| format!("no Docker Engine answers ({e})"))?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = ["scripts", "../scripts"]
        .iter()
        .map(|d| root.join(d).join("build-test-image.sh"))
        .find(|p| p.exists())
        .ok_or("scripts/build-test-image.sh not found")?;
    let script = script.display();
    let built = Command::new("sh")
        .arg(script.to_string())
        .arg(IMAGE)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        return Err(format!("cannot build {IMAGE} with {script}"));
    }
    remove_leftovers();
    let f = round(Arc::new(rt), "docker", n).await;
    let (run, stop_rm) = docker_cli(n);
    remove_leftovers();
    line("docker runtime: start -> RUNNING", n, f.start);
    line("docker runtime: create+start -> RUNNING", n, f.create_start);
    line("docker CLI: docker run -d", n, run);
    line("docker runtime: stop -> removed", n, f.stop_remove);
    line("docker CLI: docker stop + docker rm", n, stop_rm);
    println!(
        "docker runtime create+start / docker run -d = {:.2} (goal <= 1.2)",
        f.create_start.as_secs_f64() / run.as_secs_f64()
    );
    Ok(())
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let n = std::env::var("SWARM_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if test_mode { 3 } else { 100 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("swarm-bench-runtime-{}", std::process::id()));
        let process = ProcessRuntime::new(&dir).expect("state dir");
        let f = round(Arc::new(process), "proc", n).await;
        let _ = std::fs::remove_dir_all(&dir);
        line("process runtime: start -> RUNNING", n, f.start);
        line(
            "process runtime: create+start -> RUNNING",
            n,
            f.create_start,
        );
        line("process runtime: stop -> removed", n, f.stop_remove);
        if let Err(reason) = docker_part(n).await {
            println!("docker part skipped: {reason}");
        }
    });
}
